"""Evaluation assets materialised on the embedded default: benchmark data, two fake checkpoints
(the tiny model with each default recipe's position method, saved where the checkpoint asset
saves), the base model, and the leaderboard with both plots and the regression check."""

import json
import os
import re
import shutil

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.contract.layout import DataLayout
from assets.defs.benchmarks import benchmark_assets
from assets.defs.evaluation import eval_assets, eval_base
from assets.defs.keys import BASE_MODEL_KEY, CHECKPOINT_KEY, EVAL_BASE_KEY, LEADERBOARD_KEY, benchmark_key, eval_key
from assets.defs.leaderboard import REGRESSION_CHECK, leaderboard
from assets.defs.partitions import RECIPES, checkpoint_partitions, split_checkpoint_key
from assets.defs.resources import DataStore, SourceHub
from eval.benchmarks import BENCHMARKS
from eval.lmms import lmms_eval_available

PARTITIONS = ["mrope_pp|8k", "v2pe|8k"]
SMALL = {
    "benchmark__visual_haystack": {"config": {"haystack_sizes": [1, 3, 6], "items_per_size": 2}},
    **{f"benchmark__{b}": {"config": {"max_items_per_split": 1}} for b in ("videomme", "longvideobench", "mme", "mmbench")},
}
EVAL = {"config": {"video": {"frames": 4}, "max_new_tokens": 4}}


def _copy_processor(src, dst):
    for f in src.iterdir():
        if f.is_file() and f.name not in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(f, dst / f.name)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("eval-assets")
    resources = {"store": DataStore(root=str(data)), "hub": SourceHub()}
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset(key=BASE_MODEL_KEY)
    def fake_base_model():
        shutil.copytree(tiny_model_dir, data / "model" / "base", dirs_exist_ok=True)

    @dg.asset(key=CHECKPOINT_KEY, partitions_def=checkpoint_partitions)
    def fake_checkpoint(context: dg.AssetExecutionContext):
        """What the training asset leaves behind: a HF folder with the method in its config."""
        from training.positions.apply import apply_position_method, load_with_position_method

        recipe, stage = split_checkpoint_key(context.partition_key)
        out = DataLayout(data).checkpoint(recipe, stage)
        model = apply_position_method(load_with_position_method(tiny_model_dir), RECIPES[recipe].method)
        model.save_pretrained(out)
        _copy_processor(tiny_model_dir, out)

    results = {}
    results["base"] = dg.materialize(
        [fake_base_model, *benchmark_assets, eval_base],
        resources=resources,
        instance=instance,
        run_config={"ops": {**SMALL, "eval_base": EVAL}},
    )
    for pk in PARTITIONS:
        results[pk] = dg.materialize(
            [fake_checkpoint, *eval_assets],
            partition_key=pk,
            resources=resources,
            instance=instance,
            run_config={"ops": {f"eval__{b.name}": EVAL for b in BENCHMARKS}},
        )
    results["leaderboard"] = dg.materialize([leaderboard], resources=resources, instance=instance)
    return data, instance, results


def _md(result, key):
    mats = [m for m in result.asset_materializations_for_node(key.to_python_identifier()) if m.asset_key == key]
    return mats[-1].metadata


def test_every_run_succeeds_and_writes_predictions(run):
    data, _, results = run
    assert all(r.success for r in results.values())
    for spec in BENCHMARKS:
        items = pq.read_table(data / "benchmarks" / spec.name / "items.parquet").num_rows
        for model in ("base", "mrope_pp/8k", "v2pe/8k"):
            folder = data / "eval" / spec.name / model
            preds = pq.read_table(folder / "predictions.parquet").to_pylist()
            assert len(preds) == items, (spec.name, model)  # one row per item, nothing lost
            assert all(p["status"] in ("ok", "unparseable") for p in preds), [p["reason"] for p in preds]
            scores = json.loads((folder / "scores.json").read_text())
            assert scores["model"] == model and scores["n"] == items
            assert scores["answer_mode"] == "cloze"  # the embedded default: the tiny model never writes an answer
            assert all(p["status"] == "ok" and json.loads(p["extra"])["candidate_logprobs"] for p in preds)
    vh = json.loads((data / "eval" / "visual_haystack" / "v2pe/8k" / "scores.json").read_text())
    assert [p["n_images"] for p in vh["curve"]] == [1, 3, 6] and all(p["mean_tokens"] > 0 for p in vh["curve"])
    assert vh["method"] == "v2pe(d=0.25)" and vh["checkpoint"].endswith("checkpoints/v2pe/8k/final")


def test_eval_asset_metadata_has_accuracy_samples_and_the_curve(run):
    _, _, results = run
    md = _md(results["mrope_pp|8k"], eval_key("visual_haystack"))
    assert "data:image/png;base64," in md["haystack_curve"].value
    assert "accuracy_by_images" in md and "effective_length_images" in md
    assert "raw_output" in md["samples"].value and "logprobs" in md["samples"].value
    assert md["answer_mode"].value == "cloze"
    mme = _md(results["v2pe|8k"], eval_key("mme"))
    assert "mme_perception" in mme and "acc+" in mme["mme_categories"].value
    vm = _md(results["v2pe|8k"], eval_key("videomme"))
    assert "accuracy_by_duration" in vm and vm["method"].value == "v2pe(d=0.25)"
    base = _md(results["base"], EVAL_BASE_KEY)
    assert "data:image/png;base64," in base["haystack_curve"].value
    bench = _md(results["base"], benchmark_key("videomme"))
    assert bench["mode"].value == "embedded" and bench["rejected"].value == 1  # the missing video


def test_leaderboard_has_every_model_both_plots_and_the_check(run):
    data, _, results = run
    md = _md(results["leaderboard"], LEADERBOARD_KEY)
    assert list(md)[0] == "leaderboard"  # the first entry, a table the UI shows inline
    inline = md["leaderboard"].value
    headers = [c.name for c in inline.schema.columns]
    assert headers[:3] == ["model", "position method", "source"] and "Video-MME short (%)" in headers
    assert "MME perception (score / max)" in headers and "Visual Haystack effective length" in headers
    records = [r.data for r in inline.records]
    assert [r["model"] for r in records] == ["base", "mrope_pp/8k", "v2pe/8k", "chance"]
    chance = records[-1]
    assert chance["Visual Haystack accuracy, all N (%)"] == "50.0" and chance["Video-MME overall (%)"] == "25.0"
    assert chance["MME perception (score / max)"].startswith("300.0 / 800")  # 4 perception categories
    # every accuracy cell carries its 95% interval and item count; MME its maximum
    base = records[0]
    assert re.fullmatch(r"\d+\.\d \[\d+-\d+\] n=2", base["Video-MME short (%)"]), base
    assert re.fullmatch(r"\d+\.\d / 800 n=8", base["MME perception (score / max)"]), base  # 4 categories x 1 image pair
    assert base["Visual Haystack effective length"].endswith("tokens)") or base["Visual Haystack effective length"].startswith("below 60%")
    assert "random weights" in md["base_model"].value  # the fixture's base is the random tiny model
    table = md["leaderboard_markdown"].value
    assert table.startswith("**Base model: the embedded tiny Qwen2-VL")
    for model in ("| base |", "| mrope_pp/8k | mrope++ |", "| v2pe/8k | v2pe(d=0.25) |", "| chance | uniform random answer |"):
        assert model in table
    assert "| answer mode |" in table and "| cloze |" in table and "answer mode `cloze`" in table
    assert "answer mode `likelihood`" not in table  # a note only for the modes the rows use
    assert md["visual_haystack"].value.startswith("![Visual Haystack") and "data:image/png;base64," in md["visual_haystack"].value
    assert "data:image/png;base64," in md["videomme_by_duration"].value
    assert (data / "leaderboard" / "visual_haystack.png").read_bytes()[:4] == b"\x89PNG"
    assert (data / "leaderboard" / "videomme_by_duration.png").read_bytes()[:4] == b"\x89PNG"
    checks = results["leaderboard"].get_asset_check_evaluations()
    assert [c.check_name for c in checks] == [REGRESSION_CHECK] and checks[0].severity == dg.AssetCheckSeverity.WARN


def test_regression_check_warns_when_a_checkpoint_falls_behind_its_base(run):
    data, instance, _ = run
    path = data / "eval" / "mmbench" / "base" / "scores.json"
    original = path.read_text()
    try:
        scores = json.loads(original)
        scores["accuracy"] = 0.9  # the base now scores far above the tiny checkpoints
        path.write_text(json.dumps(scores))
        result = dg.materialize(
            [leaderboard],
            resources={"store": DataStore(root=str(data)), "hub": SourceHub()},
            instance=instance,
            run_config={"ops": {"leaderboard": {"config": {"regression_tolerance_pp": 5.0}}}},
        )
    finally:
        path.write_text(original)
    check = result.get_asset_check_evaluations()[0]
    assert result.success  # a WARN check does not fail the run
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["regressions"].value == 2  # mrope_pp/8k and v2pe/8k on MMBench
    assert "REGRESSION" in check.metadata["comparisons"].value


def test_definitions_wire_evaluation_to_checkpoints_and_automation():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    for spec in BENCHMARKS:
        node = graph.get(eval_key(spec.name))
        assert node.parent_keys == {CHECKPOINT_KEY, benchmark_key(spec.name)}
        assert node.partitions_def == checkpoint_partitions
        assert isinstance(node.partition_mappings[CHECKPOINT_KEY], dg.IdentityPartitionMapping)
        assert node.automation_condition.get_label() == "eager"
    assert graph.get(LEADERBOARD_KEY).parent_keys >= {eval_key(s.name) for s in BENCHMARKS} | {EVAL_BASE_KEY}
    assert graph.get(EVAL_BASE_KEY).parent_keys >= {BASE_MODEL_KEY}
    assert graph.get(LEADERBOARD_KEY).automation_condition is not None
    demo = defs.resolve_job_def("giraffe_demo")
    demo_keys = {k for k in demo.asset_layer.executable_asset_keys} if hasattr(demo, "asset_layer") else set()
    assert EVAL_BASE_KEY in demo_keys and LEADERBOARD_KEY not in demo_keys and eval_key("mme") not in demo_keys
    report = defs.resolve_job_def("report")
    assert set(report.asset_layer.executable_asset_keys) == {LEADERBOARD_KEY}
    assert defs.resolve_job_def("evaluate_checkpoint").partitions_def == checkpoint_partitions


FAKE_LMMS_MAIN = """
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--output_path") + 1]) / "giraffe_qwen2_vl"
out.mkdir(parents=True, exist_ok=True)
import importlib
plugin = os.environ["LMMS_EVAL_PLUGINS"].split(",")[-1]
models = importlib.import_module(plugin + ".models").AVAILABLE_MODELS
(out.parent / "seen.json").write_text(json.dumps({"argv": args, "plugin": plugin, "models": models}))
(out / "20260101_000000_results.json").write_text(json.dumps({
    "results": {"mme": {"alias": "mme", "mme_percetion_score,none": 1200.0, "mme_cognition_score,none": 300.0}},
    "config": {"model": "giraffe_qwen2_vl", "model_args": args[args.index("--model_args") + 1]},
    "n-samples": {"mme": {"original": 2374, "effective": 4}},
    "lmms_eval_version": "stand-in",
}))
print("stand-in lmms-eval done")
"""


@pytest.mark.skipif(not lmms_eval_available(), reason="writing lmms-eval's local task files needs its task folder ([eval] extra)")
def test_lmms_eval_pipes_run_with_a_stand_in_lmms_eval(run, tmp_path, monkeypatch):
    """The Pipes wiring without the optional extra: a stand-in ``lmms_eval`` package (visible
    only to the subprocess) records how it was called and writes a results file in lmms-eval's
    format; the asset must pass the plugin, parse the file and report the scores."""
    from assets.defs.lmms_eval import build_lmms_eval_asset

    lmms_eval_run = build_lmms_eval_asset()
    from assets.defs.keys import LMMS_EVAL_KEY

    fake = tmp_path / "fake" / "lmms_eval"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_LMMS_MAIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")) if p))
    data, instance, _ = run
    result = dg.materialize(
        [lmms_eval_run],
        partition_key=PARTITIONS[0],
        resources={"store": DataStore(root=str(data)), "hub": SourceHub()},
        instance=instance,
        run_config={"ops": {"eval__lmms_eval": {"config": {"tasks": ["mme", "videomme"], "limit": 4}}}},
    )
    assert result.success
    out = data / "eval" / "lmms_eval" / "mrope_pp" / "8k"
    seen = json.loads((out / "seen.json").read_text())
    assert seen["plugin"] == "eval.lmms_plugin" and seen["models"] == {"giraffe_qwen2_vl": "GiraffeQwen2VL"}
    model_args = seen["argv"][seen["argv"].index("--model_args") + 1]
    assert model_args.startswith(f"pretrained={DataLayout(data).checkpoint('mrope_pp', '8k')}")
    # embedded: lmms-eval's mme task file, included, on the local items; videomme has no local form
    assert seen["argv"][seen["argv"].index("--tasks") + 1] == "mme_local" and "--limit" in seen["argv"]
    tasks = Path(seen["argv"][seen["argv"].index("--include_path") + 1])
    text = (tasks / "mme_local.yaml").read_text()
    assert "include: " in text and text.split("include: ")[1].split("\n")[0].endswith("tasks/mme/mme.yaml")
    assert pq.read_table(tasks / "mme_local.parquet").num_rows == pq.read_table(data / "benchmarks" / "mme" / "items.parquet").num_rows
    row = json.loads((out / "leaderboard_row.json").read_text())
    assert (row["model"], row["method"], row["source"]) == ("mrope_pp/8k", "mrope++", "lmms-eval")
    assert row["mme_perception"] == 1200.0 and row["mme_pct"] == pytest.approx(1500 / 2800 * 100, abs=0.05)
    md = _md(result, LMMS_EVAL_KEY)
    assert md["tasks"].value == "mme" and md["scores"].value["mme_cognition"] == 300.0
    board = dg.materialize([leaderboard], resources={"store": DataStore(root=str(data)), "hub": SourceHub()}, instance=instance)
    assert "| mrope_pp/8k | mrope++ | lmms-eval |" in _md(board, LEADERBOARD_KEY)["leaderboard_markdown"].value
    (out / "leaderboard_row.json").unlink()  # leave the shared fixture as the other tests expect
