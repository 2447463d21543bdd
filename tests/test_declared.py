"""Bring your own data: datasets declared in a file (GIRAFFE_DATASETS), LLaMA-Factory's
dataset_info.json used as is, read-only user folders left byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from assets.chatml.normalize import write_chatml
from assets.sources.declared import DeclarationError, load_declarations
from assets.sources.hub import HubSettings, fetch_source
from assets.sources.registry import SOURCES
from pipelines.cli import main

LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def read_only(root: Path) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        p.chmod(0o444 if p.is_file() else 0o555)
    root.chmod(0o555)


def writable(root: Path) -> None:
    root.chmod(0o755)
    for p in root.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)


def _msgs(*turns):
    return [{"role": r, "content": c} for r, c in zip(("user", "assistant") * 4, turns)]


@pytest.fixture(scope="module")
def llamafactory(tmp_path_factory):
    """A LLaMA-Factory data folder (dataset_info.json, an image and a video dataset), read-only."""
    from assets.sources.embedded.media import encode_video

    root = tmp_path_factory.mktemp("lf") / "data"
    media = root / "mllm_demo_data"
    media.mkdir(parents=True)
    for i, colour in enumerate(("red", "green", "blue", "yellow")):
        Image.new("RGB", (56 + 28 * i, 84), colour).save(media / f"{i}.jpg")
    for i in range(2):
        encode_video(media / f"{i}.mp4", seconds=2 + i, fps=10, size=(64, 48), pattern=i, hue=40 * i)
    Image.new("RGB", (32, 32), "black").save(root.parent / "outside.jpg")
    images = [{"messages": _msgs(f"<image>What colour is picture {i}?", f"It is {c}."), "images": [f"mllm_demo_data/{i}.jpg"]}
              for i, c in enumerate(("red", "green", "blue", "yellow"))]
    images.append({"messages": _msgs("<image><image>Same colour?", "No, red and green."),
                   "images": ["mllm_demo_data/0.jpg", "mllm_demo_data/1.jpg"]})
    images.append({"messages": _msgs("<image>And this one?", "Black."), "images": ["../outside.jpg"]})  # outside media_dir
    videos = [{"messages": _msgs("<video>How long is the clip?", f"About {2 + i} seconds."), "videos": [f"mllm_demo_data/{i}.mp4"]}
              for i in range(2)]
    (root / "mllm_demo.json").write_text(json.dumps(images, indent=2))
    (root / "mllm_video_demo.json").write_text(json.dumps(videos, indent=2))
    info = {
        "mllm_demo": {"file_name": "mllm_demo.json", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "images": "images"}, "tags": LF_TAGS},
        "mllm_video_demo": {"file_name": "mllm_video_demo.json", "formatting": "sharegpt",
                            "columns": {"messages": "messages", "videos": "videos"}, "tags": LF_TAGS},
    }
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2))
    before = digest(root)
    read_only(root)
    yield root, before
    writable(root)


def test_dataset_info_entries_become_sources_with_inferred_categories(llamafactory):
    root, _ = llamafactory
    specs = {s.name: s for s in load_declarations(root / "dataset_info.json")}
    assert {n: s.category for n, s in specs.items()} == {"mllm_demo": "short_image", "mllm_video_demo": "video"}
    assert all(s.origin == "declared" and s.files_root == str(root) and s.sample is None for s in specs.values())
    assert specs["mllm_demo"].media.roots == (str(root.resolve()),)


def test_declared_lf_datasets_flow_into_the_mixture_and_the_folder_is_untouched(llamafactory, tmp_path, monkeypatch):
    """Done when: raw -> chatml -> video_frames -> token_counts -> packed -> etvlm_mixture."""
    from assets.defs.mixture import etvlm_mixture
    from assets.defs.packing import packed
    from assets.defs.resources import DataStore, QualityPolicy, SourceHub
    from pipelines.definitions import build_definitions

    root, before = llamafactory
    monkeypatch.setenv("GIRAFFE_DATASETS", str(root / "dataset_info.json"))
    store = DataStore(root=str(tmp_path / "data"))
    quality = QualityPolicy(exclude_sources=[s.name for s in SOURCES])  # only the declared data, said so
    defs = build_definitions({"store": store, "hub": SourceHub(), "quality": quality})
    names = ["mllm_demo", "mllm_video_demo"]
    keys = [dg.AssetKey([stage, n]) for n in names for stage in ("raw", "chatml")]
    keys += [dg.AssetKey(["model", "base"]), dg.AssetKey(["video_frames"]), dg.AssetKey(["token_counts"])]
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=keys,
            run_config={"ops": {"model__base": {"config": {"tokenizer_documents": 120}}}},
        )
        assert result.success
        lineage = defs.resolve_asset_graph()
        assert dg.AssetKey(["chatml", "mllm_video_demo"]) in lineage.get(dg.AssetKey(["video_frames"])).parent_keys
        assert dg.AssetKey(["chatml", "mllm_demo"]) in lineage.get(dg.AssetKey(["token_counts"])).parent_keys
        checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert checks and all(c.passed for c in checks), [(c.asset_key, c.check_name) for c in checks if not c.passed]
        md = result.asset_materializations_for_node("token_counts")[0].metadata
        assert md["sources"].value == "mllm_demo, mllm_video_demo"
        mix = dg.materialize([packed, etvlm_mixture], partition_key="8k", resources={"store": store}, instance=instance)
        assert mix.success
    data = tmp_path / "data"
    rejected = pq.read_table(data / "chatml" / "mllm_demo" / "rejected.parquet").to_pylist()
    assert [(r["reason"], r["source_rows"]) for r in rejected] == [("media_outside_root", [5])]
    videos = pq.read_table(data / "video_frames" / "videos.parquet").to_pylist()
    assert sorted(v["n_frames"] for v in videos if v["status"] == "ok") == [4, 6]
    mixture = pq.read_table(data / "etvlm_mixture" / "8k" / "mixture.parquet").to_pylist()
    assert {src for row in mixture for src in row["sources"]} == set(names)
    assert {row["category"] for row in mixture} == {"short_image", "video"}
    counted = {r["sample_id"] for r in pq.read_table(data / "token_counts" / "token_counts.parquet").to_pylist()}
    assert len(counted) == 7 and {s for row in mixture for s in row["sample_ids"]} == counted
    assert digest(root) == before  # byte-identical, nothing added


def test_sources_cli_lists_declared_datasets(llamafactory, capsys):
    root, _ = llamafactory
    assert main(["sources", "--json", "--datasets", str(root / "dataset_info.json"), "--category", "video"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["sharegpt4v", "sharegpt4o", "llava_video", "mlvu", "mllm_video_demo"]
    assert [r["origin"] for r in rows] == ["registry"] * 4 + ["declared"]


def test_datasets_check_is_a_dry_run_with_counts_reasons_and_samples(llamafactory, capsys):
    root, before = llamafactory
    assert main(["datasets", "check", str(root / "dataset_info.json")]) == 0
    out = capsys.readouterr().out
    assert "mllm_demo (short_image, Declared dataset (LLaMA-Factory sharegpt))" in out
    assert "rows read: 6 (6 decoded, 0 undecodable)" in out and "conversations: 5; rejected: 1" in out
    assert "media_outside_root: 1 (e.g. ../outside.jpg resolves to" in out
    assert "<|im_start|>user\n    <|vision_start|><|image_pad|><|vision_end|>What colour is picture 0?<|im_end|>" in out
    assert "rows read: 2 (2 decoded, 0 undecodable)" in out and "<|vision_start|><|video_pad|><|vision_end|>" in out
    assert digest(root) == before


def test_demo_ingest_sources_ingests_declared_datasets(llamafactory, fetched, data_root, tmp_path, monkeypatch, capsys):
    root, before = llamafactory
    old = dict(os.environ)
    try:
        monkeypatch.setenv("GIRAFFE_DATASETS", str(root / "dataset_info.json"))
        code = main(["demo", "--job", "ingest_sources", "--data-root", str(data_root), "--dagster-home", str(tmp_path / "home")])
    finally:
        os.environ.clear()
        os.environ.update(old)
    out = capsys.readouterr().out
    assert code == 0, out
    # the summary counts assets by family: 11 registry sources + the 2 declared ones
    assert any(line.split()[:2] == ["raw/*", "13"] for line in out.splitlines()), out
    assert any(line.split()[:2] == ["chatml/*", "13"] for line in out.splitlines()), out
    for name in ("mllm_demo", "mllm_video_demo", "mmdu"):
        assert (data_root / "chatml" / name / "conversations.parquet").is_file()
    assert pq.read_metadata(data_root / "chatml" / "mllm_video_demo" / "conversations.parquet").num_rows == 2
    assert digest(root) == before


# ------------------------------------------------------------------------- our YAML


@pytest.fixture
def own(tmp_path):
    """A user folder with LLaVA-style, alpaca, openai and LLaVA-Video-style files."""
    from assets.sources.embedded.media import encode_video

    base = tmp_path / "mine"
    (base / "imgs").mkdir(parents=True)
    (base / "clips").mkdir()
    Image.new("RGB", (64, 64), "red").save(base / "imgs" / "a.jpg")
    encode_video(base / "clips" / "c.mp4", seconds=2, fps=10, size=(64, 48), pattern=0, hue=0)
    llava = [{"id": 1, "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "Red."}]},
             {"id": 2, "image": ["a.jpg", "a.jpg"], "conversations": [{"from": "human", "value": "<image><image>Same?"}, {"from": "gpt", "value": "Yes."}]},
             {"id": 3, "image": "/etc/hostname", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]}]
    (base / "llava.json").write_text(json.dumps(llava))
    (base / "alpaca.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Add 2 and 2.", "input": "", "output": "4", "system": "Be brief.", "history": [["Hi", "Hello."]]},
        {"instruction": "Say hi.", "output": None}]))
    (base / "openai.jsonl").write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You are welcome."}]}))
    (base / "videos.json").write_text(json.dumps([{"clip": "c.mp4", "conversations": [
        {"from": "human", "value": "<image>\nWhat moves?"}, {"from": "gpt", "value": "A pattern."}]}]))
    decl = {"datasets": {
        "my_images": {"category": "short_image", "format": "sharegpt", "files": "llava.json", "media_dir": "imgs"},
        "my_text": {"category": "long_text", "format": "alpaca", "files": ["alpaca.jsonl"]},
        "my_chat": {"category": "long_text", "format": "openai", "files": ["open*.jsonl"]},
        "my_clips": {"format": "llava_video", "files": "videos.json", "media_dir": "clips", "columns": {"video": "clip"}},
    }}
    (base / "datasets.yaml").write_text(yaml.safe_dump(decl))
    return base


def _normalise(spec, tmp_path):
    fetch_source(spec, HubSettings(), tmp_path / "raw" / spec.name, tmp_path / "embedded")
    return write_chatml(spec, tmp_path / "raw" / spec.name, tmp_path / "chatml" / spec.name)


def test_yaml_formats_map_to_the_contract(own, tmp_path):
    before = digest(own)
    specs = {s.name: s for s in load_declarations(own / "datasets.yaml")}
    assert {n: s.category for n, s in specs.items()} == {"my_images": "short_image", "my_text": "long_text",
                                                         "my_chat": "long_text", "my_clips": "video"}
    images = _normalise(specs["my_images"], tmp_path)
    assert [c.to_row()["n_images"] for c in images.conversations] == [1, 2]
    assert images.reasons() == {"media_outside_root": 1}
    text = _normalise(specs["my_text"], tmp_path)
    (conv,) = text.conversations
    assert [(m["role"], m["content"][0]["text"]) for m in conv.messages] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Add 2 and 2."), ("assistant", "4")]
    assert text.reasons() == {"malformed_row": 1}
    chat = _normalise(specs["my_chat"], tmp_path)
    assert [m["role"] for m in chat.conversations[0].messages] == ["system", "user", "assistant"]
    clips = _normalise(specs["my_clips"], tmp_path)
    (clip,) = clips.conversations
    assert clip.messages[0]["content"][0] == {**clip.messages[0]["content"][0], "type": "video", "path": str((own / "clips" / "c.mp4").resolve())}
    assert digest(own) == before


BAD = [
    ({"x": {"category": "pictures", "format": "sharegpt", "files": "llava.json", "media_dir": "imgs"}}, "entry 'x': field 'category'"),
    ({"x": {"category": "short_image", "format": "vicuna", "files": "llava.json", "media_dir": "imgs"}}, "entry 'x': field 'format'"),
    ({"x": {"category": "long_text", "format": "alpaca", "files": "nothing*.json"}}, "entry 'x': field 'files': "),
    ({"x": {"category": "long_text", "format": "alpaca"}}, "entry 'x': field 'files'"),
    ({"x": {"category": "short_image", "format": "sharegpt", "files": "llava.json", "media_dir": "nope"}}, "entry 'x': field 'media_dir'"),
    ({"x": {"category": "short_image", "format": "sharegpt", "files": "llava.json"}}, "entry 'x': field 'media_dir'"),
    ({"x": {"category": "long_text", "format": "sharegpt", "files": "llava.json", "columns": {"mesages": "c"}}}, "entry 'x': field 'columns'"),
    ({"x": {"category": "long_text", "format": "sharegpt", "files": "llava.json", "colour": 1}}, "entry 'x': field 'colour'"),
    ({"x": {"category": "long_text", "format": "sharegpt", "files": {"hub": "not-a-repo"}}}, "entry 'x': field 'files.hub'"),
    ({"mmdu": {"category": "long_text", "format": "alpaca", "files": "alpaca.jsonl"}}, "entry 'mmdu': the name is taken"),
    ({"x": {"format": "sharegpt", "files": "llava.json"}}, "entry 'x': field 'category'"),
]


@pytest.mark.parametrize("decl,expected", BAD, ids=[b[1] for b in BAD])
def test_a_bad_declaration_is_one_line_naming_entry_and_field_and_exits_2(own, tmp_path, capsys, decl, expected):
    path = own / "bad.yaml"
    path.write_text(yaml.safe_dump({"datasets": decl}))
    with pytest.raises(DeclarationError) as exc:
        load_declarations(path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    home = tmp_path / "home"
    assert main(["demo", "--datasets", str(path), "--dagster-home", str(home), "--data-root", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not home.exists() and not (tmp_path / "d").exists()  # nothing ran, nothing was created
    assert main(["datasets", "check", str(path)]) == 2


@pytest.mark.parametrize("entry,expected", [
    ({"formatting": "sharegpt"}, "entry 'x': field 'file_name'"),
    ({"file_name": "llava.json", "formatting": "chatml"}, "entry 'x': field 'formatting'"),
    ({"file_name": "llava.json", "ranking": True}, "entry 'x': field 'ranking'"),
    ({"file_name": "llava.json", "columns": {"messages": "conversations", "pictures": "image"}}, "entry 'x': field 'columns'"),
    ({"hf_hub_url": "org/name", "subset": "en"}, "entry 'x': field 'subset'"),
])
def test_bad_dataset_info_entries(own, entry, expected):
    path = own / "dataset_info.json"
    path.write_text(json.dumps({"x": entry}))
    with pytest.raises(DeclarationError, match=expected.replace("(", r"\(")):
        load_declarations(path)
