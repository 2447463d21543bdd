"""lmms-eval, really run: its own ``mme`` and ``mmbench_en_dev`` task logic (prompts,
``process_results``, aggregation, from its installed task files) through our registered model
``giraffe_qwen2_vl`` on the embedded samples, against the native runner on the same items.

Parity is checked in generate mode (greedy decoding): lmms-eval's Qwen2-VL model implements
``generate_until`` only (its ``loglikelihood`` raises ``NotImplementedError``) and both tasks
are ``generate_until`` tasks, so there is no likelihood mode to compare. The checkpoint is the
demo's ``mrope_pp|8k`` (the base model taught the task types, then extended with M-RoPE++):
the plugin must re-apply that method for the answers to agree.

Needs the [eval] extra (``scripts/setup.sh`` installs it; CI runs this).
"""

import json
import shutil

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.contract.layout import DataLayout
from assets.defs.keys import LEADERBOARD_KEY
from assets.defs.resources import DataStore, SourceHub
from eval import lmms
from eval.benchmarks import get_benchmark
from eval.items import PREDICTION_SCHEMA, read_items
from eval.lmms import lmms_eval_available

pytestmark = pytest.mark.skipif(not lmms_eval_available(), reason="lmms-eval is not installed: bash scripts/setup.sh installs the [eval] extra")

PARTITION, RECIPE, STAGE = "mrope_pp|8k", "mrope_pp", "8k"
# lmms-eval's generation budget per task (mme.yaml: 16; mmbench: 1024), given to the native runner too
MAX_NEW_TOKENS = {"mme": 16, "mmbench": 1024}
TASKS = {"mme": "mme", "mmbench": "mmbench_en_dev"}


@pytest.fixture(scope="module")
def parity_run(demo_run, tmp_path_factory):
    """lmms-eval on the demo's checkpoint (a copy, in a data root of its own so the demo's stays
    as the other tests read it), then the native runner on the same items."""
    from assets.defs.lmms_eval import build_lmms_eval_asset
    from eval.runner import RunConfig, Runner

    code, _, demo = demo_run
    assert code == 0
    root = tmp_path_factory.mktemp("lmms-parity")
    src, dst = DataLayout(demo), DataLayout(root)
    shutil.copytree(src.checkpoint(RECIPE, STAGE), dst.checkpoint(RECIPE, STAGE))
    for name in TASKS:
        shutil.copytree(src.benchmark(name), dst.benchmark(name))  # items point at the demo's media
    resources = {"store": DataStore(root=str(root)), "hub": SourceHub()}
    result = dg.materialize(
        [build_lmms_eval_asset()],
        partition_key=PARTITION,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"eval__lmms_eval": {"config": {"tasks": list(TASKS.values()), "batch_size": 1}}}},
        raise_on_error=False,
    )
    assert result.success, [str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
    out = root / "eval" / "lmms_eval" / RECIPE / STAGE
    native = {}
    for name in TASKS:
        items = read_items(dst.benchmark_items(name))
        cfg = RunConfig(batch_size=1, max_new_tokens=MAX_NEW_TOKENS[name], answer_mode="generate")
        runner = Runner.from_checkpoint(dst.checkpoint(RECIPE, STAGE), f"{RECIPE}/{STAGE}", cfg)
        rows = runner.run(items)
        summary = get_benchmark(name).summarize(rows) | {"model": f"{RECIPE}/{STAGE}", "answer_mode": "generate"}
        folder = dst.eval_root / name / RECIPE / STAGE
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), folder / "predictions.parquet")
        (folder / "scores.json").write_text(json.dumps(summary, default=str))
        native[name] = (items, rows, summary)
    return root, out, native, lmms.read_samples(out), json.loads((out / "leaderboard_row.json").read_text())


def _by_source_row(items, rows):
    """Native rows in the order of the lmms-eval view (the published rows that became items)."""
    pairs = sorted(zip(items, rows), key=lambda p: int(p[0].extra["source_row"]))
    return [r for _, r in pairs]


@pytest.mark.parametrize("name", list(TASKS))
def test_lmms_eval_gives_the_native_answers(parity_run, name):
    _, _, native, samples, _ = parity_run
    items, rows, _ = native[name]
    logged = samples[TASKS[name]]
    assert len(logged) == len(items) > 0  # every item, no other row (the loader's rejects are not in the view)
    theirs = [lmms.response(s) for s in logged]
    ours = [r["raw_output"].strip() for r in _by_source_row(items, rows)]
    assert theirs == ours
    # a comparison of something: every answer is text, and both scoring paths (a parsed answer
    # and an unparseable one) are exercised where the model gives both (the embedded tiny model,
    # taught in likelihood form, also writes colour words or a letter to a yes/no question when it generates)
    assert all(t for t in theirs)
    assert any(r["status"] == "ok" for r in rows)


def test_lmms_eval_scores_equal_the_native_scores(parity_run):
    _, _, native, _, row = parity_run
    mme = native["mme"][2]["mme"]
    assert row["mme_perception"] == round(mme["perception"], 1)
    assert row["mme_cognition"] == round(mme["cognition"], 1)
    assert row["mmbench"] == round(100 * native["mmbench"][2]["accuracy"], 1)
    assert (row["source"], row["model"], row["method"]) == ("lmms-eval", f"{RECIPE}/{STAGE}", "mrope++")


def test_lmms_eval_rows_join_the_leaderboard(parity_run):
    from assets.defs.leaderboard import leaderboard

    root, _, _, _, row = parity_run
    result = dg.materialize([leaderboard], resources={"store": DataStore(root=str(root)), "hub": SourceHub()},
                            instance=dg.DagsterInstance.ephemeral())
    [mat] = [m for m in result.asset_materializations_for_node("leaderboard") if m.asset_key == LEADERBOARD_KEY]
    records = [r.data for r in mat.metadata["leaderboard"].value.records]
    sources = [(r["model"], r["source"]) for r in records]
    assert (f"{RECIPE}/{STAGE}", "native") in sources and (f"{RECIPE}/{STAGE}", "lmms-eval") in sources
    native_row = next(r for r in records if r["source"] == "native")
    lmms_row = next(r for r in records if r["source"] == "lmms-eval")
    # the same number in both rows (the native cell adds its interval and item count)
    assert native_row["MMBench en dev (%)"].split()[0] == lmms_row["MMBench en dev (%)"].split()[0]
    assert native_row["MME perception (score / max)"].split()[0] == lmms_row["MME perception (score / max)"].split()[0]
