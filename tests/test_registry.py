import json

from assets.sources.registry import SOURCES, SourceSpec, get_source
from pipelines.cli import main

# Paper Table 7: category of every ETVLM source.
TABLE_7 = {
    "longalign_10k": "long_text",
    "longalpaca": "long_text",
    "llava_instruct": "short_image",
    "m3it": "short_image",
    "mmdu": "interleave",
    "mantis": "interleave",
    "arxivqa_interleave": "interleave",
    "sharegpt4v": "video",
    "sharegpt4o": "video",
    "llava_video": "video",
    "mlvu": "video",
}


def test_registry_holds_every_table7_source_with_its_category():
    assert {s.name: s.category for s in SOURCES} == TABLE_7


def test_each_entry_names_a_hub_repo_data_files_adapter_and_sample():
    for spec in SOURCES:
        assert isinstance(spec, SourceSpec)
        assert "/" in spec.hub_id and spec.data_files, spec.name
        assert callable(spec.adapter) and callable(spec.sample), spec.name
        assert spec.media.kind in ("none", "inline", "files"), spec.name
        if spec.media.archives:
            assert spec.media.kind == "files"


def test_get_source_unknown_name_lists_known_ones():
    try:
        get_source("nope")
    except KeyError as exc:
        assert "longalign_10k" in str(exc)
    else:
        raise AssertionError("expected KeyError")


def test_cli_sources_prints_registry_json(capsys):
    assert main(["sources", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(TABLE_7)
    by_name = {r["name"]: r for r in rows}
    assert by_name["llava_video"]["hub_id"] == "lmms-lab/LLaVA-Video-178K"
    assert by_name["mlvu"]["hub_id"] == "MLVU/MVLU"
    assert by_name["mmdu"]["adapter"] == "assets.sources.adapters.llava_conversations"
    assert "load_dataset('THUDM/LongAlign-10k'" in by_name["longalign_10k"]["loader"]
    for row in rows:
        assert {"name", "category", "hub_id", "loader", "license", "notes", "media"} <= row.keys()


def test_cli_sources_filters_by_category(capsys):
    assert main(["sources", "--json", "--category", "video"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows) == ["llava_video", "mlvu", "sharegpt4o", "sharegpt4v"]
