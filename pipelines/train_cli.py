"""``giraffe train --recipe NAME [--stages 8k,32k]``: progressive extension from the command line.

Materialises the ``checkpoint`` partitions of one recipe stage after stage (8k, then 32k
from 8k's checkpoint, ...) into the project's Dagster instance through the
``train_checkpoint`` job, so every run, its streamed logs and its metadata (loss curve,
tokens/s, peak memory) are in the UI afterwards. Stops at the first stage that fails.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pipelines.instance import default_home, prepare_home


def cmd_train(args: argparse.Namespace) -> int:
    home = Path(args.dagster_home).resolve() if args.dagster_home else default_home()
    prepare_home(home)
    if args.data_root:
        os.environ["GIRAFFE_DATA_ROOT"] = str(Path(args.data_root).resolve())

    import dagster as dg

    from assets.defs.partitions import CHECKPOINT_KEYS, checkpoint_key, split_checkpoint_key
    from pipelines.runs import execute_job
    from training.recipes import load_recipes

    recipes = load_recipes()
    if args.recipe not in recipes:
        print(f"giraffe train: unknown recipe {args.recipe!r}; configured: {sorted(recipes)}")
        return 2
    stages = args.stages.split(",") if args.stages else list(recipes[args.recipe].stages)
    unknown = [s for s in stages if checkpoint_key(args.recipe, s) not in CHECKPOINT_KEYS]
    if unknown:
        print(f"giraffe train: recipe {args.recipe!r} does not train stage(s) {unknown}; its stages: "
              f"{[split_checkpoint_key(k)[1] for k in CHECKPOINT_KEYS if split_checkpoint_key(k)[0] == args.recipe]}")
        return 2
    config: dict = {"launcher": args.launcher, "nproc": args.nproc, "deepspeed_config": args.deepspeed_config,
                    "save_every": args.save_every, "batch_source": args.batch_source}
    if args.steps:
        config["steps"] = args.steps
    if args.sequence_parallel_size > 1:
        config["sequence_parallel_size"] = args.sequence_parallel_size
    instance = dg.DagsterInstance.get()
    for stage in stages:
        key = checkpoint_key(args.recipe, stage)
        print(f"giraffe train: {args.recipe}|{stage} ({args.launcher}, {args.nproc} process(es))", flush=True)
        started = time.monotonic()
        result = execute_job(  # a run of the code location: listed under train_checkpoint in the UI
            instance, "train_checkpoint", partition_key=key,
            run_config={"ops": {"checkpoint": {"config": config}},
                        "loggers": {"console": {"config": {"log_level": args.log_level}}}},
        )
        if not result.success:
            errors = [str(e.event_specific_data.error.message).strip() for e in result.all_events if e.is_step_failure]
            print(f"giraffe train: {args.recipe}|{stage} failed: {' '.join(errors)}")
            return 1
        [mat] = result.asset_materializations_for_node("checkpoint")
        md = {k: v.value for k, v in mat.metadata.items()}
        print(
            f"  loss {md['first_loss']:.4f} -> {md['final_loss']:.4f} over {md['steps']} steps "
            f"(resumed at {md['resumed_from_step']}), {md['tokens_per_s']} tokens/s, peak {md['peak_memory_mb']} MB, "
            f"{time.monotonic() - started:.1f} s\n  checkpoint {md['checkpoint']}",
            flush=True,
        )
    return 0


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a recipe's stages in order (checkpoint assets through Pipes)")
    p.add_argument("--recipe", required=True, help="recipe name (training/recipes.py or GIRAFFE_RECIPES)")
    p.add_argument("--stages", help="comma-separated stages in order (default: all of the recipe's)")
    p.add_argument("--launcher", default="python", choices=["python", "torchrun", "deepspeed"])
    p.add_argument("--nproc", type=int, default=1, help="processes / GPUs (torchrun, deepspeed)")
    p.add_argument("--deepspeed-config", default="zero2", help="zero2, zero3_offload or a JSON path")
    p.add_argument("--sequence-parallel-size", type=int, default=1, help="Ulysses degree (deepspeed)")
    p.add_argument("--steps", type=int, help="override the recipe's steps per stage")
    p.add_argument("--save-every", type=int, default=2, help="resumable state every N steps")
    p.add_argument("--batch-source", default="packed", help="packed | file:<path> | module:function")
    p.add_argument("--data-root", help="data root (default ./data or $GIRAFFE_DATA_ROOT)")
    p.add_argument("--dagster-home", help="Dagster instance folder (default ./dagster_home)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_train)
