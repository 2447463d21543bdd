"""eval/lmms_eval: lmms-eval's standard tasks on one checkpoint, through Dagster Pipes.

Only in the graph when lmms-eval is installed (the optional [eval] extra); run on demand. Its
rows join the leaderboard as ``source = lmms-eval``.

On the hub, the tasks read their hub datasets. On the embedded default there is no hub, so
each task that has a local form (``Benchmark.lmms_local``: ``mme``, ``mmbench_en_dev``) runs
as ``<task>_local``: lmms-eval's own task file (prompt, ``process_results``, aggregation)
included from its install, with the dataset pointed at the rows of the local sample that
became ``benchmark/<name>`` items (``eval.lmms.write_local_tasks``). Tasks without one (the
video tasks download their videos from the hub) are skipped with a log line.
"""

import json
import sys
from typing import Optional

import dagster as dg

from assets.contract.layout import PROJECT_ROOT
from assets.defs.evaluation import method_of
from assets.defs.keys import CHECKPOINT_KEY, LMMS_EVAL_GROUP, LMMS_EVAL_KEY
from assets.defs.metadata import EVAL_TEAM
from assets.defs.partitions import checkpoint_partitions, split_checkpoint_key
from assets.defs.pipes import subprocess_client
from assets.defs.resources import DataStore, SourceHub
from eval import leaderboard as lb
from eval import lmms
from eval.benchmarks import BENCHMARKS
from eval.items import read_items

LMMS_EVAL_ENABLED = lmms.lmms_eval_available()
LMMS_EVAL_CODE_VERSION = "1"  # bump when the bridge's output changes for the same checkpoint


class LmmsEvalConfig(dg.Config):
    tasks: list[str] = list(lmms.DEFAULT_TASKS)
    batch_size: int = 1
    limit: Optional[int] = None
    model_args: str = ""


def build_lmms_eval_asset() -> dg.AssetsDefinition:
    """The asset, built on demand: a module-level asset would be in the graph without lmms-eval."""

    @dg.asset(
        key=LMMS_EVAL_KEY,
        group_name=LMMS_EVAL_GROUP,
        code_version=LMMS_EVAL_CODE_VERSION,
        owners=[EVAL_TEAM],
        partitions_def=checkpoint_partitions,
        deps=[dg.AssetDep(CHECKPOINT_KEY, partition_mapping=dg.IdentityPartitionMapping())],
        kinds={"pytorch"},
        description="lmms-eval's standard tasks (videomme, longvideobench_val_v, mme, mmbench_en_dev) on one "
        "checkpoint with its position method (model giraffe_qwen2_vl), launched through Dagster Pipes. "
        "Needs the optional [eval] extra; run on demand (GPU).",
    )
    def lmms_eval_run(context: dg.AssetExecutionContext, config: LmmsEvalConfig, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
        recipe, stage = split_checkpoint_key(context.partition_key)
        path = store.layout.checkpoint(recipe, stage)
        out = store.stage_dir("eval", "lmms_eval") / recipe / stage
        tasks, include = list(config.tasks), None
        if hub.mode == "embedded":
            tasks, include = local_tasks(context, store, config.tasks, out / "tasks")
            if not tasks:
                raise dg.Failure(f"none of {config.tasks} runs on the embedded sample (local forms: "
                                 f"{[t.task for b in BENCHMARKS for t in b.lmms_local]})")
        extras = {
            "checkpoint": str(path),
            "output_dir": str(out),
            "tasks": tasks,
            "include_path": str(include) if include else None,
            "batch_size": config.batch_size,
            "limit": config.limit,
            "model_args": config.model_args,
            "model": lb.model_id(recipe, stage),
            "method": method_of(recipe),
            "repo_root": str(PROJECT_ROOT),
        }
        client = subprocess_client()
        return client.run(command=[sys.executable, "-m", "eval.lmms_pipes"], context=context, extras=extras).get_materialize_result()

    return lmms_eval_run


def local_tasks(context, store: DataStore, wanted, folder) -> tuple[list[str], object]:
    """The local forms of the wanted tasks over the materialised benchmark items."""
    sources = {}
    for bench in BENCHMARKS:
        if not any(t.task in wanted for t in bench.lmms_local):
            continue
        items_path = store.layout.benchmark_items(bench.name)
        manifest = items_path.parent / "manifest.json"
        if not items_path.is_file() or not manifest.is_file():
            raise dg.Failure(f"{items_path} is missing: materialise benchmark/{bench.name} first")
        sources[bench.name] = (json.loads(manifest.read_text())["location"], read_items(items_path))
    names = lmms.write_local_tasks(folder, sources)
    kept = {lmms.task_name(n) for n in names}
    skipped = [t for t in wanted if t not in kept]
    if skipped:
        context.log.info(f"lmms-eval on the embedded sample: {skipped} have no local form (their videos come from the hub); skipped")
    return names, folder


lmms_eval_assets = [build_lmms_eval_asset()] if LMMS_EVAL_ENABLED else []
