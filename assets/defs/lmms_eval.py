"""eval/lmms_eval: lmms-eval's standard tasks on one checkpoint, through Dagster Pipes.

Only in the graph when lmms-eval is installed (the optional [eval] extra); run on demand. Its
rows join the leaderboard as ``source = lmms-eval``.
"""

import sys
from typing import Optional

import dagster as dg

from assets.contract.layout import PROJECT_ROOT
from assets.defs.evaluation import method_of
from assets.defs.keys import CHECKPOINT_KEY, LMMS_EVAL_GROUP, LMMS_EVAL_KEY
from assets.defs.partitions import checkpoint_partitions, split_checkpoint_key
from assets.defs.resources import DataStore
from eval import leaderboard as lb
from eval import lmms

LMMS_EVAL_ENABLED = lmms.lmms_eval_available()


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
        partitions_def=checkpoint_partitions,
        deps=[dg.AssetDep(CHECKPOINT_KEY, partition_mapping=dg.IdentityPartitionMapping())],
        kinds={"pytorch"},
        description="lmms-eval's standard tasks (videomme, longvideobench_val_v, mme, mmbench_en_dev) on one "
        "checkpoint with its position method (model giraffe_qwen2_vl), launched through Dagster Pipes. "
        "Needs the optional [eval] extra; run on demand (GPU).",
    )
    def lmms_eval_run(context: dg.AssetExecutionContext, config: LmmsEvalConfig, store: DataStore) -> dg.MaterializeResult:
        recipe, stage = split_checkpoint_key(context.partition_key)
        path = store.layout.checkpoint(recipe, stage)
        out = store.stage_dir("eval", "lmms_eval") / recipe / stage
        extras = {
            "checkpoint": str(path),
            "output_dir": str(out),
            "tasks": list(config.tasks),
            "batch_size": config.batch_size,
            "limit": config.limit,
            "model_args": config.model_args,
            "model": lb.model_id(recipe, stage),
            "method": method_of(recipe),
            "repo_root": str(PROJECT_ROOT),
        }
        client = dg.PipesSubprocessClient()
        return client.run(command=[sys.executable, "-m", "eval.lmms_pipes"], context=context, extras=extras).get_materialize_result()

    return lmms_eval_run


lmms_eval_assets = [build_lmms_eval_asset()] if LMMS_EVAL_ENABLED else []
