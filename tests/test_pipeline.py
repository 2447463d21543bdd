"""End to end: the code location loads and `giraffe demo` materialises the whole graph."""

import dagster as dg

from assets.defs.partitions import SHARD_KEYS
from assets.sources.registry import SOURCES

# `giraffe demo` printed 448 lines before the console was quieted (issue 14), 166 after. What it prints now
# does not depend on the machine's speed, except the progress lines of slow loops (at most one
# per 10 % of a loop, and only after 10 s): those are bounded separately.
DEMO_CONSOLE_MAX_LINES = 170
# Sharding (docs/shards.md) runs the sample stages once per shard: each shard after the first adds
# its job line and one line per chatml source, video_frames and token_counts (201 lines at 4 shards).
DEMO_LINES_PER_EXTRA_SHARD = 1 + len(SOURCES) + 2
PROGRESS_LINES_PER_LOOP = 9  # a line at 10 %, ..., 90 %; the last is the stage's own summary


def test_definitions_load_with_every_source_asset_and_checks():
    from pipelines.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    for spec in SOURCES:
        assert f"raw/{spec.name}" in keys and f"chatml/{spec.name}" in keys
    assert "model/base" in keys
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["chatml", "mmdu"])).parent_keys == {dg.AssetKey(["raw", "mmdu"])}
    checks = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert {"no_sample_lost", "no_special_tokens"} <= checks


# `demo_run` (conftest.py, session scope): `giraffe demo` once, shared with test_ui.py.


def shard_metadata(instance, key: dg.AssetKey) -> dict[str, dict]:
    """Shard key -> the metadata of that partition's latest materialisation."""
    out = {}
    for shard in SHARD_KEYS:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[shard]), limit=1).records
        assert records, (key, shard)
        out[shard] = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
    return out


def test_demo_materialises_every_asset_and_passes_checks(demo_run, capsys):
    code, instance, data = demo_run
    assert code == 0
    for spec in SOURCES:
        for stage in ("raw", "chatml"):
            event = instance.get_latest_materialization_event(dg.AssetKey([stage, spec.name]))
            assert event is not None, (stage, spec.name)
        # every shard, each accounting for its own raw rows; together they hold the whole source
        assert instance.get_materialized_partitions(dg.AssetKey(["chatml", spec.name])) == set(SHARD_KEYS)
        shards = shard_metadata(instance, dg.AssetKey(["chatml", spec.name]))
        for md in shards.values():
            assert md["rows_in"] == md["conversations"] + md["rejected"] or spec.group_size > 1
        raw_md = instance.get_latest_materialization_event(dg.AssetKey(["raw", spec.name])).asset_materialization.metadata
        assert raw_md["mode"].value == "embedded"
        assert sum(md["rows_in"] for md in shards.values()) == raw_md["dagster/row_count"].value
        for check in ("no_sample_lost", "no_special_tokens"):
            evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(dg.AssetKey(["chatml", spec.name]), check)]
            )
            record = next(iter(evaluation.values()))
            assert record.status.value == "SUCCEEDED", (spec.name, check)
    assert (data / "model" / "base" / "model.safetensors").is_file()


def test_chatml_parquet_reads_with_datasets_and_polars(demo_run):
    import datasets
    import polars as pl

    _, _, data = demo_run
    parts = sorted((data / "chatml" / "llava_video" / "shards").glob("*/conversations.parquet"))
    assert [p.parent.name for p in parts] == SHARD_KEYS
    ds = datasets.load_dataset("parquet", data_files=[str(p) for p in parts], split="train")
    df = pl.read_parquet(parts)
    assert len(ds) == df.height == 8
    assert ds[0]["messages"][0]["content"][0]["type"] == "video"
    rejected = pl.read_parquet([p.with_name("rejected.parquet") for p in parts])
    assert rejected["reason"].to_list() == ["missing_media"]


def test_rematerialising_raw_keeps_its_data_version(demo_run):
    """Same content -> same data version, which the nightly refresh relies on."""
    from assets.sources.hub import HubSettings, fetch_source
    from assets.sources.registry import get_source

    _, instance, data = demo_run
    event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "longalpaca"]))
    before = event.asset_materialization.tags["dagster/data_version"]
    again = fetch_source(get_source("longalpaca"), HubSettings(), data / "raw" / "longalpaca", data / "embedded")
    assert again.content_hash == before


def test_demo_samples_videos_and_counts_every_sample(demo_run):
    import polars as pl

    code, instance, data = demo_run
    shards = shard_metadata(instance, dg.AssetKey(["video_frames"]))
    assert sum(md["frames_sampled"] for md in shards.values()) > 0
    # the two MLVU videos (> 512 frames); a video that samples of two shards share is in both shards' tables
    hybrid = {v["video_key"] for k in SHARD_KEYS
              for v in pl.read_parquet(data / "video_frames" / "shards" / k / "videos.parquet").to_dicts() if v["hybrid"]}
    assert len(hybrid) == 2 and sum(md["videos_hybrid"] for md in shards.values()) >= 2
    assert any("data:image/png;base64," in md["tokens_per_video"] for md in shards.values())
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["video_frames"]), "frames_match_grids")]
    )
    assert next(iter(check.values())).status.value == "SUCCEEDED"
    for name in ("video_tokens_match_frames", "no_sample_lost"):
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["token_counts"]), name)]
        )
        assert next(iter(check.values())).status.value == "SUCCEEDED", name
    shards = data / "token_counts" / "shards"
    counts = pl.read_parquet([shards / k / "token_counts.parquet" for k in SHARD_KEYS])
    rejected = pl.read_parquet([shards / k / "rejected.parquet" for k in SHARD_KEYS])
    conversations = sum(pl.read_parquet(data / "chatml" / s.name / "shards" / k / "conversations.parquet").height
                        for s in SOURCES for k in SHARD_KEYS)
    assert counts.height + rejected.height == conversations
    assert set(counts["category"]) == {"long_text", "short_image", "interleave", "video"}
    video = counts.filter(pl.col("category") == "video")
    assert (video["n_video_tokens"] > 0).all()
    assert (counts["n_tokens"] == counts["n_text_tokens"] + counts["n_image_tokens"] + counts["n_video_tokens"]).all()


def test_demo_packs_and_mixes_every_stage_partition(demo_run):
    """`giraffe demo` runs stage_data once per stage: packed/etvlm_mixture for each partition,
    their packing checks pass and the shards follow docs/packed_shards.md."""
    import polars as pl

    from assets.defs.partitions import STAGES

    code, instance, data = demo_run
    assert code == 0
    counts = pl.read_parquet([data / "token_counts" / "shards" / k / "token_counts.parquet" for k in SHARD_KEYS])
    for stage in STAGES:
        for key in (["packed"], ["etvlm_mixture"]):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None
            assert stage in instance.get_materialized_partitions(dg.AssetKey(key)), (key, stage)
        assignments = pl.read_parquet(data / "packed" / stage / "assignments.parquet")
        assert assignments.height == counts.height and set(assignments["status"]) <= {"packed", "deferred", "rejected"}
        assert (data / "etvlm_mixture" / stage / "mixture.parquet").is_file()
        assert (data / "etvlm_mixture" / stage / "data_card.md").is_file()
    for check in ("no_sample_lost", "no_truncation", "pack_fill"):
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["packed"]), check)]
        )
        assert next(iter(evaluation.values())).status.value == "SUCCEEDED", check


def test_demo_base_model_is_taught_and_records_its_original_context(demo_run):
    """model/base on the embedded default: the tiny Qwen2-VL taught the task types at L_V = 256
    tokens, recorded in its config; the methods extend from it and the evaluation goes past it."""
    import json

    from training.positions.apply import read_position_method
    from training.tiny_model import base_record, original_length

    code, instance, data = demo_run
    assert code == 0
    config = json.loads((data / "model" / "base" / "config.json").read_text())
    record = base_record(config)
    assert record["kind"] == "embedded-tiny" and record["steps"] > 0 and original_length(config) == 256
    assert config["text_config"]["max_position_embeddings"] == 256
    md = instance.get_latest_materialization_event(dg.AssetKey(["model", "base"])).asset_materialization.metadata
    assert "before" in md["held_out_accuracy"].value and md["original_length"].value == 256
    # the recipe's M-RoPE++ extends from the base's L_V (its recipe gives only the target)
    from transformers import AutoConfig

    method = read_position_method(AutoConfig.from_pretrained(data / "checkpoints" / "mrope_pp" / "8k" / "final"))
    assert (method.rope.method, method.rope.original_length, method.rope.target_length) == ("mrope++", 256, 1024)
    # Visual Haystack reaches several times L_V: 8 items at every N, prompts up to > 3 x 256 tokens
    vh = json.loads((data / "eval" / "visual_haystack" / "base" / "scores.json").read_text())
    assert [p["n"] for p in vh["curve"]] == [8] * 9
    assert max(p["mean_tokens"] for p in vh["curve"]) > 3 * 256 > min(p["mean_tokens"] for p in vh["curve"])


def test_demo_leaderboard_says_what_it_shows(demo_run):
    import json

    from assets.defs.partitions import CHECKPOINT_KEYS

    _, instance, data = demo_run
    board = (data / "leaderboard" / "leaderboard.md").read_text()
    assert board.startswith("**Base model: the embedded tiny Qwen2-VL")
    assert "| chance | uniform random answer | expected |" in board and "95% Wilson interval" in board
    rows = json.loads((data / "leaderboard" / "leaderboard.json").read_text())
    assert [r["model"] for r in rows] == ["base", *[k.replace("|", "/") for k in CHECKPOINT_KEYS]]
    for r in rows:  # every cell says how many items it rests on
        assert r["stats"]["videomme_short"]["n"] == 8 and r["stats"]["mmbench"]["n"] == 12
        assert r["stats"]["mme_perception"]["max"] == 800 and r["stats"]["mme_cognition"]["max"] == 400
        assert r["stats"]["vh_effective_images"]["text"]
    md = instance.get_latest_materialization_event(dg.AssetKey(["leaderboard"])).asset_materialization.metadata
    assert list(md)[0] == "leaderboard" and md["base_model"].value.startswith("Base model: the embedded tiny Qwen2-VL")
    # the taught base is above chance on the short items of every task type (chance: Video-MME 25%,
    # MMBench 25.7%, MME perception 300 / 800); a random base binomially passes each at most ~5%
    base = rows[0]
    assert base["model"] == "base" and base["videomme_short"] >= 62.5 and base["mmbench"] >= 50.0
    assert base["mme_perception"] >= 400.0 and base["vh_effective_images"] >= 1


def test_every_asset_has_a_code_version_an_owner_and_described_columns():
    from pipelines.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version, f"{key.to_user_string()} has no code_version"
        assert node.owners and all(o.startswith("team:giraffe-") for o in node.owners), key
        schema = node.metadata.get("dagster/column_schema")
        if schema is not None:
            columns = getattr(schema, "schema", schema).columns  # a TableSchema or its metadata value
            undescribed = [c.name for c in columns if not c.description]
            assert undescribed == [], (key.to_user_string(), undescribed)
    # descriptions escape what markdown would eat (the UI rendered "checkpoints///final")
    assert "`checkpoints/<recipe>/<stage>/final`" in graph.get(dg.AssetKey(["checkpoint"])).description


def test_every_project_schema_describes_every_column():
    import pyarrow as pa

    from assets.contract import conversation
    from assets.contract.schema import description
    from assets.mixture import mix
    from assets.packing import stage
    from assets.tokens import count
    from assets.video import frames
    from eval import items

    schemas = {
        f"{m.__name__}.{n}": v
        for m in (conversation, mix, stage, count, frames, items)
        for n, v in vars(m).items()
        if n.endswith("_SCHEMA") and isinstance(v, pa.Schema)
    }
    assert len(schemas) >= 11
    for name, schema in schemas.items():
        assert [f.name for f in schema if not description(f)] == [], name


def test_demo_metadata_has_schemas_code_versions_and_readable_plots(demo_run):
    import base64
    import io
    import re

    from PIL import Image

    _, instance, data = demo_run

    def latest(*key):
        return instance.get_latest_materialization_event(dg.AssetKey(list(key))).asset_materialization

    def pngs(md_text: str) -> list:
        return [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", md_text)]

    from pipelines.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    for key in (("raw", "mmdu"), ("benchmark", "mme"), ("eval", "mme"), ("video_frames",), ("token_counts",)):
        mat = latest(*key)
        columns = mat.metadata["dagster/column_schema"].value.columns
        assert columns and all(c.description for c in columns), key
        declared = graph.get(dg.AssetKey(list(key))).code_version
        assert declared and mat.tags.get("dagster/code_version") == declared, key
    raw = {c.name: c.description for c in latest("raw", "mmdu").metadata["dagster/column_schema"].value.columns}
    assert raw["conversations"].startswith("turns [{from: human|gpt, value}]")

    # the shard with the most videos (each shard's step writes its own contact sheet)
    frames = max(
        (instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(["video_frames"]), asset_partitions=[k]),
                                         limit=1).records[0].asset_materialization.metadata for k in SHARD_KEYS),
        key=lambda md: md["videos"].value,
    )
    assert [c.name for c in frames["dagster/column_schema"].value.columns][:3] == ["video_key", "frame", "frame_index"]
    assert frames["dagster/row_count"].value == frames["frames_sampled"].value  # rows are frames
    from assets.contract.markdown import MARKDOWN_IMAGE_BYTES

    [sheet] = pngs(frames["contact_sheet"].value)
    assert sheet.size[0] >= 900 and len(frames["contact_sheet"].value) <= MARKDOWN_IMAGE_BYTES * 4 / 3 + 200
    assert Image.open(frames["contact_sheet_png"].value).size[0] >= 900  # full size beside the data
    videos = {c.name: c.description for c in frames["videos_schema"].value.columns}
    assert videos["duration"] == "length of the video, seconds" and all(videos.values())
    header = frames["videos_table"].value.splitlines()[0]
    assert "| source |" in header and "| duration |" in header

    ckpt = instance.get_latest_materialization_event(dg.AssetKey(["checkpoint"])).asset_materialization.metadata
    assert ckpt["losses"].value.startswith("| step | loss | learning rate |")
    [curves] = pngs(ckpt["loss_curve"].value)
    assert curves.size[0] >= 900
    board = latest("leaderboard").metadata
    for name in ("visual_haystack", "videomme_by_duration"):
        [plot] = pngs(board[name].value)
        assert plot.size[0] >= 900, name


def test_demo_console_is_short_quiet_and_compact(demo_console):
    """`giraffe demo` prints one short line per thing worth knowing: no library progress bars
    (they redraw with carriage returns), no known-harmless warnings, no 110-character prefixes."""
    import re

    assert "\r" not in demo_console
    for noise in ("Generating train split", "Creating parquet", "Loading weights", "Writing model shards",
                  "Setting accelerator to CPU", "PreviewWarning", "BetaWarning", "Traceback",
                  "[pipes] external process successfully opened"):
        assert noise not in demo_console, noise
    lines = demo_console.splitlines()
    progress = [line for line in lines if re.search(r": \d+/\d+ \w+ \(\d+%\), ", line)]
    print(f"giraffe demo console: {len(lines)} lines, {len(progress)} of them progress lines")
    limit = DEMO_CONSOLE_MAX_LINES + DEMO_LINES_PER_EXTRA_SHARD * (len(SHARD_KEYS) - 1)
    assert len(lines) - len(progress) <= limit, f"{len(lines) - len(progress)} lines"
    loops = {}
    for line in progress:  # "12:04:18 eval/mme: mme on v2pe/8k: 12/24 items (50%), 1.9 items/s, ETA 6.2 s"
        label = re.match(r"\d\d:\d\d:\d\d (.*): \d+/\d+ \w+ \(", line).group(1)
        loops[label] = loops.get(label, 0) + 1
    assert all(n <= PROGRESS_LINES_PER_LOOP for n in loops.values()), loops
    assert all(re.search(r", ETA \d", line) and re.search(r"\w/s,| s/\w+,", line) for line in progress), progress[:3]
    logged = [line for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert len(logged) >= 40
    prefixes = [re.match(r"\d\d:\d\d:\d\d (?:(?:WARNING|ERROR) )?[\w/]+: ", line) for line in logged]
    assert all(prefixes), [line for line, p in zip(logged, prefixes) if not p][:3]
    assert max(len(p.group(0)) for p in prefixes) <= 45
    # the training job's own lines arrive through Pipes, compact too, and say their ETA
    assert any(re.search(r" checkpoint: step 1/4 loss [\d.]+ lr .* ETA ", line) for line in logged)
