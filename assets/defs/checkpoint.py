"""checkpoint: one stage of one recipe, trained in a subprocess launched through Dagster Pipes.

The asset is partitioned by the ``recipe|stage`` pairs the recipes train (``assets.defs.partitions``). It plans the run
(``training.plan``: start weights, shards, hyper-parameters; every problem is a ``dg.Failure``
before anything starts), writes ``run.json`` next to the checkpoint, and launches
``python -m training`` / ``torchrun`` / ``deepspeed`` with ``PipesSubprocessClient``: the job's
log lines stream into the run, and rank 0 reports the loss curve, tokens/s, peak memory and the
checkpoint path as the materialisation's metadata. A killed run resumes from its last saved
step when the partition is materialised again (the job finds ``state/step_<n>``).

Stage order: Dagster only accepts an asset depending on *itself* through a time-window
partition mapping with a negative offset (``_validate_self_deps`` in Dagster 1.13: "Assets can
only depend on themselves if they are (a) time-partitioned ... (b) multipartitioned, with one
time dimension ..."), so a static ``stage`` dimension cannot carry a
``checkpoint[r|32k] <- checkpoint[r|8k]`` dependency in the asset graph. The dependency is
enforced here instead (a missing predecessor fails with the partition to materialise first)
and recorded on every materialisation: ``initialized_from_partition`` (e.g. ``mrope_pp|8k``),
its path and the content hash of the weights the run started from, which equals the
predecessor's ``weights_fingerprint``. The graph edges that Dagster does draw are
``etvlm_mixture[stage] -> checkpoint[*|stage]`` (a ``StaticPartitionMapping`` to the recipes
training that stage) and ``model/base -> checkpoint``.
"""

import json
import os
from pathlib import Path
from typing import Optional

import dagster as dg

from assets.contract.layout import PROJECT_ROOT
from assets.defs.keys import BASE_MODEL_KEY, CHECKPOINT_KEY, MIXTURE_KEY, TRAINING_GROUP
from assets.defs.metadata import TRAINING_TEAM
from assets.defs.partitions import checkpoint_partitions, mixture_to_checkpoint, split_checkpoint_key
from assets.defs.pools import GPU_POOL  # the instance limits this pool to 1
from assets.defs.resources import DataStore
from training.launch import LaunchConfig, build_command, describe
from training.plan import PlanError, plan_stage
from training.recipes import load_recipes

# Bump when the training job's output changes for the same inputs (the loop, export, metadata).
CHECKPOINT_CODE_VERSION = "1"


class CheckpointConfig(dg.Config):
    """How to launch this stage's training (the recipe holds the hyper-parameters)."""

    launcher: str = "python"
    """``python`` (one process: CPU or one GPU), ``torchrun`` or ``deepspeed``."""
    nproc: int = 1
    """Processes / GPUs on this host (torchrun, deepspeed)."""
    deepspeed_config: str = "zero2"
    """With ``deepspeed``: ``zero2``, ``zero3_offload`` (shipped in training/configs) or a JSON path."""
    sequence_parallel_size: int = 1
    """Ulysses sequence parallelism across GPUs (deepspeed only), e.g. 4 or 8 for 128K."""
    batch_source: str = "packed"
    """``packed`` (the collator over the mixture shard), ``file:<path>`` or ``module:function``."""
    steps: Optional[int] = None
    """Override the recipe's steps per stage."""
    save_every: int = 2
    """Resumable state every N steps (0: only at the end)."""
    attn_implementation: str = "auto"
    dtype: str = "auto"
    gradient_checkpointing: bool = True
    env: dict[str, str] = {}
    """Extra environment for the job (e.g. CUDA_VISIBLE_DEVICES, NCCL_*, DS_ACCELERATOR)."""


def _overrides(config: CheckpointConfig) -> dict:
    from training.ds import shipped_config

    out = {
        "batch_source": config.batch_source,
        "steps": config.steps,
        "save_every": config.save_every,
        "attn_implementation": config.attn_implementation,
        "dtype": config.dtype,
        "gradient_checkpointing": config.gradient_checkpointing,
        "sequence_parallel_size": config.sequence_parallel_size,
    }
    if config.launcher == "deepspeed":
        out["deepspeed"] = shipped_config(config.deepspeed_config)
    return out


def _job_env(config: CheckpointConfig) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    env = {"PYTHONPATH": str(PROJECT_ROOT) + (os.pathsep + path if path else "")}
    env.update(config.env)
    return env


@dg.asset(
    key=CHECKPOINT_KEY,
    partitions_def=checkpoint_partitions,
    group_name=TRAINING_GROUP,
    code_version=CHECKPOINT_CODE_VERSION,
    owners=[TRAINING_TEAM],
    kinds={"pytorch", "deepspeed"},
    pool=GPU_POOL,
    deps=[
        dg.AssetDep(MIXTURE_KEY, partition_mapping=mixture_to_checkpoint),
        dg.AssetDep(BASE_MODEL_KEY),
    ],
    description="One stage of progressive context extension for one recipe: a save_pretrained "
    "checkpoint (safetensors, position method in config.json, processor files) at "
    "`checkpoints/<recipe>/<stage>/final`, trained from the previous stage's checkpoint of the same "
    "recipe (the base model for the first stage) in a Pipes subprocess (python / torchrun / deepspeed).",
)
def checkpoint(
    context: dg.AssetExecutionContext,
    config: CheckpointConfig,
    store: DataStore,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    recipe_name, stage = split_checkpoint_key(context.partition_key)
    recipes = load_recipes()
    if recipe_name not in recipes:
        raise dg.Failure(description=f"recipe {recipe_name!r} is not configured (GIRAFFE_RECIPES): {sorted(recipes)}")
    try:
        launch = LaunchConfig(launcher=config.launcher, nproc=config.nproc)
        plan = plan_stage(recipes[recipe_name], stage, store.path, _overrides(config))
    except (PlanError, ValueError) as err:
        raise dg.Failure(description=str(err)) from None

    cfg = plan.config
    run_json = cfg.write_json(plan.run_config_path)
    cmd = build_command(launch, str(run_json), cfg.deepspeed)
    start = f"checkpoint {recipe_name}|{plan.previous}" if plan.previous else "the base model"
    context.log.info(f"training {recipe_name}|{stage} from {start} ({cfg.model_path}); command: {describe(cmd)}")

    result = pipes_subprocess_client.run(
        command=cmd, context=context, env=_job_env(config), cwd=str(PROJECT_ROOT)
    ).get_materialize_result()
    final = Path(cfg.final_dir)
    if not (final / "config.json").is_file():
        raise dg.Failure(description=f"the training job ended without writing {final}")
    extra = {
        "recipe": recipe_name,
        "stage": stage,
        "initialized_from_partition": f"{recipe_name}|{plan.previous}" if plan.previous else "model/base",
        "command": describe(cmd),
        "run_config": dg.MetadataValue.path(str(run_json)),
        "recipe_config": dg.MetadataValue.json(json.loads(json.dumps(plan.recipe.to_dict()))),
    }
    return dg.MaterializeResult(metadata={**(result.metadata or {}), **extra})
