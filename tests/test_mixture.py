"""ETVLM ratio mixing (IPF plan, seeded choice, tolerance check) and the stage assets."""

import hashlib

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from assets.defs.partitions import STAGE_CAPACITIES, STAGES
from assets.mixture.mix import achieved_shares, build_mixture, check_shares, choose, ipf, max_sequence_tokens, plan_mixture
from assets.packing.stage import pack_stage

TARGETS = {"long_text": 0.20, "short_image": 0.25, "interleave": 0.25, "video": 0.30}


def test_ipf_meets_both_marginals_and_keeps_the_tables_interaction():
    seed = np.array([[5.0, 1.0], [2.0, 8.0], [4.0, 4.0], [1.0, 9.0]])
    rows, cols = np.array([0.2, 0.25, 0.25, 0.3]), np.array([0.4, 0.6])
    fit = ipf(seed, rows, cols)
    np.testing.assert_allclose(fit.sum(axis=1), rows, atol=1e-12)
    np.testing.assert_allclose(fit.sum(axis=0), cols, atol=1e-12)
    # IPF only rescales rows and columns: fit = a_i * b_j * seed (odds ratios preserved)
    ratio = fit / seed
    np.testing.assert_allclose(ratio / ratio[:, :1], np.tile(ratio[0] / ratio[0, 0], (4, 1)), rtol=1e-9)


def test_ipf_keeps_structural_zeros_and_plan_reaches_exact_shares():
    available = {
        ("long_text", False): 100, ("long_text", True): 900,
        ("short_image", False): 500,  # short images are never long
        ("interleave", False): 300, ("interleave", True): 100,
        ("video", False): 200, ("video", True): 800,
    }
    plan = plan_mixture(available, TARGETS, 0.6)
    assert plan.long_applicable and plan.notes == []
    assert ("short_image", True) not in plan.shares
    assert sum(plan.shares.values()) == pytest.approx(1.0, abs=1e-12)
    for c, t in TARGETS.items():
        assert plan.shares.get((c, False), 0) + plan.shares.get((c, True), 0) == pytest.approx(t, abs=1e-12)
    assert sum(v for (c, long), v in plan.shares.items() if long) == pytest.approx(0.6, abs=1e-12)


def test_plan_says_when_the_long_target_does_not_apply_or_cannot_be_reached():
    short_only = {(c, False): 1000 for c in TARGETS}  # the 8K stage: nothing is long
    plan = plan_mixture(short_only, TARGETS, 0.6)
    assert not plan.long_applicable and "not applicable" in plan.notes[0]
    assert {c: plan.shares[(c, False)] for c in TARGETS} == pytest.approx(TARGETS)
    # only long text has long samples: at most 20% can be long
    some_long = {**short_only, ("long_text", True): 5000}
    plan = plan_mixture(some_long, TARGETS, 0.6)
    assert plan.long_range == pytest.approx((0.0, 0.2)) and plan.long_planned == pytest.approx(0.2)
    assert plan.shares[("long_text", True)] == pytest.approx(0.2) and ("long_text", False) not in plan.shares
    assert "unreachable" in plan.notes[0]
    # a category with no sequences: its share goes to the others
    no_video = {k: v for k, v in short_only.items() if k[0] != "video"}
    plan = plan_mixture(no_video, TARGETS, None)
    assert plan.category_planned["video"] == 0 and plan.category_planned["long_text"] == pytest.approx(0.2 / 0.7)
    assert "no video sequences" in plan.notes[0]


def test_choose_repeats_whole_sequences_then_a_seeded_subset():
    tokens = np.array([100, 200, 300, 400])
    idx, copies = choose(tokens, 2 * 1000 + 350, np.random.default_rng(0))
    assert sorted(idx[copies == 0].tolist()) == [0, 1, 2, 3] and sorted(idx[copies == 1].tolist()) == [0, 1, 2, 3]
    assert abs(int(tokens[idx[copies == 2]].sum()) - 350) <= 50
    again = choose(tokens, 2350, np.random.default_rng(0))
    assert np.array_equal(idx, again[0]) and np.array_equal(copies, again[1])
    assert choose(tokens, 0, np.random.default_rng(0))[0].size == 0


def synthetic_counts(n: int = 1200, seed: int = 0) -> pa.Table:
    """Token counts with every stratum populated at 32K and above (long text, interleave and
    video have samples over 8K), so the ETVLM targets are reachable."""
    rng = np.random.default_rng(seed)
    ranges = {"long_text": (2000, 60000), "short_image": (300, 3000), "interleave": (1000, 14000), "video": (2000, 100000)}
    cats = rng.choice(list(ranges), n)
    lengths = [int(np.exp(rng.uniform(np.log(ranges[c][0]), np.log(ranges[c][1])))) for c in cats]
    return pa.table(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "source": [f"src_{c}" for c in cats],
            "category": cats.tolist(),
            "n_tokens": pa.array(lengths, pa.int64()),
            "n_text_tokens": pa.array(lengths, pa.int64()),
        }
    )


def test_mixture_reaches_the_targets_and_is_deterministic():
    counts = synthetic_counts()
    sequences = pack_stage(counts, "32k", STAGE_CAPACITIES).sequences
    budget = 3 * int(pc.sum(sequences.column("n_tokens")).as_py())
    mix = build_mixture(sequences, "32k", category_shares=TARGETS, long_share=0.6, total_tokens=budget, seed=1)
    shares, long_share, total = achieved_shares(mix.table)
    assert shares == pytest.approx(TARGETS, abs=0.01) and long_share == pytest.approx(0.6, abs=0.01)
    assert abs(total - budget) / budget < 0.01
    assert max(mix.table.column("copy").to_pylist()) >= 1  # up-sampled strata repeat whole sequences
    assert check_shares(mix.table, mix.plan, 0.02, max_sequence_tokens(sequences)).passed
    again = build_mixture(sequences, "32k", category_shares=TARGETS, long_share=0.6, total_tokens=budget, seed=1)
    assert again.table.equals(mix.table)
    other = build_mixture(sequences, "32k", category_shares=TARGETS, long_share=0.6, total_tokens=budget, seed=2)
    assert other.table.column("seq_id").to_pylist() != mix.table.column("seq_id").to_pylist()


def test_share_check_fails_on_a_drifted_mixture():
    counts = synthetic_counts()
    sequences = pack_stage(counts, "32k", STAGE_CAPACITIES).sequences
    budget = 3 * int(pc.sum(sequences.column("n_tokens")).as_py())
    mix = build_mixture(sequences, "32k", category_shares=TARGETS, long_share=0.6, total_tokens=budget)
    # drop two thirds of the video rows: video and long shares drift far beyond tolerance
    video = np.flatnonzero(np.array(mix.table.column("category").to_pylist()) == "video")
    keep = np.setdiff1d(np.arange(mix.table.num_rows), video[: 2 * video.size // 3])
    drifted = mix.table.take(pa.array(keep))
    check = check_shares(drifted, mix.plan, 0.02, max_sequence_tokens(sequences))
    assert not check.passed and check.severity == "ERROR"
    assert {r["share"] for r in check.rows if r["status"] == "drift"} >= {"video", "long"}
    # a tiny stage where one sequence is a large share of the mix: a miss is a warning
    few = pack_stage(synthetic_counts(12, seed=3), "32k", STAGE_CAPACITIES).sequences
    small = build_mixture(few, "32k", category_shares=TARGETS, long_share=0.6)
    small_check = check_shares(small.table, small.plan, 0.001, max_sequence_tokens(few))
    assert not small_check.passed and small_check.severity == "WARN"


# --- the assets, materialised on a constructed token_counts table -------------------------


@pytest.fixture(scope="module")
def stage_root(tmp_path_factory):
    from assets.defs.mixture import etvlm_mixture
    from assets.defs.packing import packed
    from assets.defs.resources import DataStore

    root = tmp_path_factory.mktemp("stage-data")
    (root / "token_counts").mkdir()
    counts = synthetic_counts(600, seed=4)
    pq.write_table(counts, root / "token_counts" / "token_counts.parquet")
    store = DataStore(root=str(root))
    results = {}
    for stage in STAGES:
        results[stage] = dg.materialize(
            [packed, etvlm_mixture],
            partition_key=stage,
            resources={"store": store},
            run_config={"ops": {"etvlm_mixture": {"config": {"total_tokens": 40_000_000, "seed": 3}}}},
        )
    return root, counts, results, store


def _checks(result):
    return {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name): e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_assets_materialise_every_stage_with_passing_checks(stage_root):
    root, counts, results, _ = stage_root
    for stage, result in results.items():
        assert result.success
        checks = _checks(result)
        for name in ("no_sample_lost", "no_truncation", "pack_fill"):
            assert checks[("packed", name)].passed, (stage, name)
        share = checks[("etvlm_mixture", "shares_within_tolerance")]
        assert share.passed, (stage, share.metadata)
        assignments = pq.read_table(root / "packed" / stage / "assignments.parquet")
        assert assignments.num_rows == counts.num_rows
        status = assignments.column("status").to_pylist()
        md = {k: v.value for k, v in result.asset_materializations_for_node("packed")[0].metadata.items()}
        assert md["packed"] + md["deferred"] + md["rejected"] == counts.num_rows == md["samples_in"]
        assert md["packed"] == status.count("packed")
        card = (root / "etvlm_mixture" / stage / "data_card.md").read_text()
        assert "| share | target | planned | achieved |" in card and "Rejects and deferrals by reason" in card
        assert (root / "etvlm_mixture" / stage / "fill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        mix_md = result.asset_materializations_for_node("etvlm_mixture")[0].metadata
        assert "data:image/png;base64," in mix_md["data_card"].value
    # the 8k stage has nothing long: the long target is reported as not applicable
    card = (root / "etvlm_mixture" / "8k" / "data_card.md").read_text()
    assert "| long | 0.6 | n/a |" in card and "not applicable" in card
    # a sample over 8K is deferred at 8k and packed at 32k, with the stage named
    long_one = next(r for r in counts.to_pylist() if 8192 < r["n_tokens"] <= 32768)
    at_8k = next(r for r in pq.read_table(root / "packed" / "8k" / "assignments.parquet").to_pylist() if r["sample_id"] == long_one["sample_id"])
    at_32k = next(r for r in pq.read_table(root / "packed" / "32k" / "assignments.parquet").to_pylist() if r["sample_id"] == long_one["sample_id"])
    assert (at_8k["status"], at_8k["reason"], at_8k["detail"].endswith("goes to 32k")) == ("deferred", "longer_than_stage", True)
    assert at_32k["status"] == "packed" and at_32k["seq_id"].startswith("32k-") and at_32k["long"]


def test_shards_load_with_datasets_and_rematerialising_is_byte_identical(stage_root):
    import datasets

    from assets.defs.mixture import etvlm_mixture
    from assets.defs.packing import packed

    root, counts, _, store = stage_root
    seqs = datasets.load_dataset("parquet", data_files=str(root / "packed" / "32k" / "sequences.parquet"), split="train")
    mix = datasets.load_dataset("parquet", data_files=str(root / "etvlm_mixture" / "32k" / "mixture.parquet"), split="train")
    row = seqs[0]
    assert set(row) >= {"seq_id", "stage", "capacity", "mode", "category", "long", "sample_ids", "sources", "offsets", "lengths", "n_tokens"}
    assert sum(row["lengths"]) == row["n_tokens"] <= 32768 and row["mode"] == "concat"
    assert "copy" in mix.column_names and len(mix) > 0
    path = root / "etvlm_mixture" / "32k" / "mixture.parquet"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    before_packed = hashlib.sha256((root / "packed" / "32k" / "sequences.parquet").read_bytes()).hexdigest()
    again = dg.materialize(
        [packed, etvlm_mixture],
        partition_key="32k",
        resources={"store": store},
        run_config={"ops": {"etvlm_mixture": {"config": {"total_tokens": 40_000_000, "seed": 3}}}},
    )
    assert again.success
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert hashlib.sha256((root / "packed" / "32k" / "sequences.parquet").read_bytes()).hexdigest() == before_packed


def test_isolated_mode_is_recorded_in_rows_and_schema(tmp_path):
    from assets.defs.packing import packed
    from assets.defs.resources import DataStore

    (tmp_path / "token_counts").mkdir()
    pq.write_table(synthetic_counts(50, seed=9), tmp_path / "token_counts" / "token_counts.parquet")
    result = dg.materialize(
        [packed],
        partition_key="8k",
        resources={"store": DataStore(root=str(tmp_path))},
        run_config={"ops": {"packed": {"config": {"attention_mode": "isolated"}}}},
    )
    assert result.success
    table = pq.read_table(tmp_path / "packed" / "8k" / "sequences.parquet")
    assert set(table.column("mode").to_pylist()) == {"isolated"}
    assert table.schema.metadata[b"giraffe_mode"] == b"isolated"
    assert table.schema.metadata[b"giraffe_capacity"] == b"8192"
