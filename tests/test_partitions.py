"""Shards as partitions: the shard rule, each shard's ChatML against the unsharded result, the
merged token counts' order, and lineage from a stage back to every shard and source."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.contract.shards import DEFAULT_SHARDS, Shard, shard_count, shard_key, shard_keys, shard_of


def test_shard_rule_is_sha1_of_the_id_and_stable():
    import hashlib

    ids = [f"sample-{i}" for i in range(2000)]
    for sid in ids[:50]:
        expected = int(hashlib.sha1(sid.encode()).hexdigest()[:16], 16) % 7
        assert shard_of(sid, 7) == expected
    # balanced: every one of 8 shards holds 250 +- 60 of 2000 ids
    sizes = [sum(shard_of(s, 8) == k for s in ids) for k in range(8)]
    assert sum(sizes) == 2000 and max(abs(n - 250) for n in sizes) < 60, sizes
    assert shard_keys(4) == ["00", "01", "02", "03"] and shard_key(7, 256) == "007"
    assert Shard.from_key("02", 4) == Shard(2, 4) and Shard(2, 4).key == "02"
    assert Shard(1, 3).contains("sample-0") == (shard_of("sample-0", 3) == 1)


def test_shard_count_from_the_environment():
    assert shard_count({}) == DEFAULT_SHARDS == 4
    assert shard_count({"GIRAFFE_SHARDS": "256"}) == 256
    for bad in ("0", "-3", "four", "1e9"):
        with pytest.raises(ValueError, match="GIRAFFE_SHARDS"):
            shard_count({"GIRAFFE_SHARDS": bad})
    with pytest.raises(ValueError, match="not a shard key"):
        Shard.from_key("4", 4)


@pytest.mark.parametrize("source", ["llava_video", "arxivqa_interleave", "longalpaca"])
def test_shards_of_a_source_partition_its_unsharded_chatml(tmp_path, source):
    """Every shard's conversations and rejections together are exactly the unsharded ones (same
    ids, same rows), each shard's no_sample_lost accounting holds, and each sample is in the
    shard its id hashes to (a grouped source, arxivqa_interleave, groups rows before hashing)."""
    from assets.chatml.stage import run_chatml
    from assets.sources.hub import HubSettings, fetch_source
    from assets.sources.registry import get_source

    spec = get_source(source)
    raw = tmp_path / "raw" / source
    fetch_source(spec, HubSettings(), raw, tmp_path / "embedded")

    def rows(folder, table):
        return [json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(folder / f"{table}.parquet").to_pylist()]

    whole = run_chatml(spec, raw, tmp_path / "whole", workers=1, media_dir=tmp_path / "media")
    count = 3
    conversations, rejections, rows_in = [], [], 0
    for i in range(count):
        shard = Shard(i, count)
        folder = tmp_path / "shards" / shard.key
        part = run_chatml(spec, raw, folder, workers=1, keep=shard.contains, media_dir=tmp_path / "media")
        ok, detail = part.accounting()
        assert ok, detail
        for table in ("conversations", "rejected"):
            assert all(shard.contains(json.loads(r)["sample_id"]) for r in rows(folder, table))
        conversations += rows(folder, "conversations")
        rejections += rows(folder, "rejected")
        rows_in += part.rows_in
        assert pq.read_metadata(folder / "conversations.parquet").num_rows == part.conversations
    assert rows_in == whole.rows_in
    assert sorted(conversations) == sorted(rows(tmp_path / "whole", "conversations"))
    assert sorted(rejections) == sorted(rows(tmp_path / "whole", "rejected"))
    assert whole.conversations > 0


def test_merged_token_counts_restore_the_unsharded_order(tmp_path, monkeypatch):
    """Packing places equal lengths in input order, so the merged table must not depend on the
    shard count: source order first (the asset's list), then each source's raw row order."""
    from assets.contract.layout import DataLayout
    from assets.defs.tokens import SOURCES_META, read_token_counts
    from assets.tokens.count import COUNT_SCHEMA

    sources = ["zeta", "alpha"]  # the asset's order, not alphabetical
    rows = [{"sample_id": f"{s}-{r}", "source": s, "category": "long_text", "n_tokens": 10, "n_text_tokens": 10,
             "n_image_tokens": 0, "n_video_tokens": 0, "n_images": 0, "n_videos": 0, "source_row": r}
            for s in sources for r in (0, 3, 4, 9, 12)]
    schema = COUNT_SCHEMA.with_metadata({**(COUNT_SCHEMA.metadata or {}), SOURCES_META: json.dumps(sources).encode()})
    for shards in (1, 3, 4):
        monkeypatch.setattr("assets.defs.tokens.SHARD_KEYS", shard_keys(shards))
        monkeypatch.setenv("GIRAFFE_SHARDS", str(shards))
        layout = DataLayout(tmp_path / f"root{shards}")
        for k in shard_keys(shards):
            part = [r for r in rows if shard_of(r["sample_id"], shards) == int(k)]
            (layout.token_counts_shard(k)).mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(part, schema=schema), layout.token_counts_shard(k) / "token_counts.parquet")
        merged = read_token_counts(layout, ["sample_id", "n_tokens"])
        assert merged.column_names == ["sample_id", "n_tokens"]
        assert merged.column("sample_id").to_pylist() == [r["sample_id"] for r in rows], shards
    # a missing shard is named, never silently packed without it
    (layout.token_counts_shard("02") / "token_counts.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="02"):
        read_token_counts(layout)


def test_lineage_walks_from_a_stage_back_to_every_shard_and_source():
    from assets.defs.keys import PACKED_KEY, TOKEN_COUNTS_KEY, VIDEO_FRAMES_KEY, chatml_key, raw_key
    from assets.defs.partitions import SHARD_KEYS, shard_partitions
    from pipelines.definitions import build_definitions
    from pipelines.jobs import demo_partition_keys

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    packed = graph.get(PACKED_KEY)
    assert TOKEN_COUNTS_KEY in packed.parent_keys
    mapping = packed.partition_mappings[TOKEN_COUNTS_KEY]
    assert isinstance(mapping, dg.AllPartitionMapping)
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        packed.partitions_def.subset_with_partition_keys(["8k"]), packed.partitions_def, shard_partitions
    ).partitions_subset
    assert set(upstream.get_partition_keys()) == set(SHARD_KEYS)
    counts = graph.get(TOKEN_COUNTS_KEY)
    assert counts.partitions_def == shard_partitions and VIDEO_FRAMES_KEY in counts.parent_keys
    assert chatml_key("mmdu") in counts.parent_keys
    assert graph.get(chatml_key("mmdu")).parent_keys == {raw_key("mmdu")}
    assert graph.get(chatml_key("mmdu")).partitions_def == shard_partitions
    assert graph.get(raw_key("mmdu")).partitions_def is None
    # the jobs a backfill or the demo runs: one run per shard, all keys
    job = defs.resolve_job_def("shard_data")
    assert demo_partition_keys(job) == SHARD_KEYS
    assert set(job.asset_layer.executable_asset_keys) >= {TOKEN_COUNTS_KEY, VIDEO_FRAMES_KEY, chatml_key("mmdu")}
