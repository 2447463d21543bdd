"""``giraffe train --recipe NAME [--stages 8k,32k]``: progressive extension from the command line.

Materialises the ``checkpoint`` partitions of one recipe stage after stage (8k, then 32k
from 8k's checkpoint, ...) into the project's Dagster instance through the
``train_checkpoint`` job, so every run, its streamed logs and its metadata (loss curve,
tokens/s, peak memory) are in the UI afterwards. Stops at the first stage that fails.

Everything that can be known before training is checked before the first stage starts
(:func:`check_request`): the recipe, the stages and their order, the launcher and process
count, the first stage's whole plan (start weights, mixture shard, configuration) and the
mixture shards of the later ones. A stage that could only fail after the ones before it had
trained for hours is refused in a second, with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipelines.cli_args import add_verbose, non_negative_int, positive_int, refuse, writable_dir

LAUNCHERS = ("python", "torchrun", "deepspeed")


def _recipes():
    """(recipes by name, None) or ({}, why they could not be read)."""
    from training.recipes import load_recipes

    try:
        return load_recipes(), None
    except (OSError, ValueError, TypeError) as err:
        return {}, f"cannot read the recipes (GIRAFFE_RECIPES={os.environ.get('GIRAFFE_RECIPES')}): {err}"


def _method_text(method: dict) -> str:
    parts = []
    rope = (method or {}).get("rope") or {}
    if rope.get("method") not in (None, "none"):
        parts.append(f"rope {rope['method']}")
    if (method or {}).get("v2pe") is not None:
        parts.append("V2PE")
    return " + ".join(parts) or "stock positions"


def recipes_help() -> str:
    recipes, error = _recipes()
    if error:
        return f"configured recipes: {error}"
    lines = ["configured recipes (training/recipes.py, or a JSON list in $GIRAFFE_RECIPES):"]
    width = max((len(n) for n in recipes), default=0)
    for name, r in recipes.items():
        lines.append(f"  {name.ljust(width)}  stages {' -> '.join(r.stages)}; {_method_text(r.method)}; "
                     f"{r.steps_per_stage} steps per stage; from {r.base_model}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """A multi-line problem list (``ConfigError``) as one line."""
    lines = [line.strip().removeprefix("- ") for line in str(text).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    head = lines[0].rstrip(":")
    return f"{head}: {'; '.join(lines[1:])}"


def data_root(args: argparse.Namespace) -> Path:
    """The data root the run will use (the same rule as ``assets.defs.resources``)."""
    if args.data_root:
        return Path(args.data_root).resolve()
    return Path(os.environ.get("GIRAFFE_DATA_ROOT", Path.cwd() / "data")).resolve()


def parse_stages(text: str | None, recipe) -> tuple[list[str] | None, str | None]:
    """(stages, None) in the recipe's order, or (None, why not)."""
    if not text:
        return list(recipe.stages), None
    stages = [s.strip() for s in text.split(",")]
    if not all(stages):
        return None, f"--stages {text!r} has an empty stage name"
    known = list(recipe.stages)
    unknown = [s for s in stages if s not in known]
    if unknown:
        return None, f"stage {unknown[0]!r} is not a stage of recipe {recipe.name!r} ({', '.join(known)})"
    twice = sorted({s for s in stages if stages.count(s) > 1}, key=stages.index)
    if twice:
        return None, f"stage {twice[0]!r} is listed twice in --stages {text}"
    order = [known.index(s) for s in stages]
    if order != sorted(order):
        return None, f"--stages {text} is out of order: recipe {recipe.name!r} trains {' -> '.join(known)}"
    return stages, None


def overrides(args: argparse.Namespace) -> dict:
    """The checkpoint asset's config for this request (``CheckpointConfig`` fields)."""
    config: dict = {"launcher": args.launcher, "nproc": args.nproc, "deepspeed_config": args.deepspeed_config,
                    "save_every": args.save_every, "batch_source": args.batch_source}
    if args.steps:
        config["steps"] = args.steps
    if args.sequence_parallel_size > 1:
        config["sequence_parallel_size"] = args.sequence_parallel_size
    return config


def check_request(args: argparse.Namespace) -> tuple[list[str] | None, str | None]:
    """(stages to train, None) when the whole request can start, else (None, the first problem)."""
    from assets.contract.layout import DataLayout
    from training.launch import LaunchConfig
    from training.plan import PlanError, plan_stage
    from training.recipes import previous_stage

    recipes, error = _recipes()
    if error:
        return None, error
    recipe = recipes.get(args.recipe)
    if recipe is None:
        configured = ", ".join(f"{n} ({', '.join(r.stages)})" for n, r in recipes.items())
        return None, f"unknown recipe {args.recipe!r}; configured: {configured}"
    stages, error = parse_stages(args.stages, recipe)
    if error:
        return None, error
    try:
        LaunchConfig(launcher=args.launcher, nproc=args.nproc)
    except ValueError as err:
        return None, f"--launcher {args.launcher} --nproc {args.nproc}: {err}"
    sp = args.sequence_parallel_size
    if sp > 1 and args.launcher != "deepspeed":
        return None, f"--sequence-parallel-size {sp} (Ulysses) needs --launcher deepspeed"
    if args.nproc % sp:
        return None, f"--nproc {args.nproc} is not a multiple of --sequence-parallel-size {sp}"
    root = data_root(args)
    config = overrides(args)
    plan_overrides = {k: v for k, v in config.items() if k in ("batch_source", "steps", "save_every", "sequence_parallel_size")}
    if args.launcher == "deepspeed":
        from training.ds import shipped_config

        plan_overrides["deepspeed"] = shipped_config(args.deepspeed_config)
    try:
        plan_stage(recipe, stages[0], root, plan_overrides)
    except PlanError as err:
        return None, _one_line(str(err))
    for before, stage in zip(stages, stages[1:]):
        prev = previous_stage(stage, recipe.stages)
        if prev != before and not (DataLayout(root).checkpoint(recipe.name, prev) / "config.json").is_file():
            return None, (f"stage {stage!r} starts from stage {prev!r}, which is neither in --stages before it "
                          f"nor trained at {DataLayout(root).checkpoint(recipe.name, prev)}")
        shard = DataLayout(root).mixture(stage)
        if args.batch_source == "packed" and not shard.is_file():
            return None, f"the mixture shard for stage {stage!r} is missing at {shard}: materialise etvlm_mixture {stage} first"
    return stages, None


def cmd_train(args: argparse.Namespace) -> int:
    stages, problem = check_request(args)
    if problem:
        return refuse("train", problem)
    home = Path(args.dagster_home).resolve() if args.dagster_home else None
    from pipelines.instance import default_home, prepare_home

    home = home or default_home()
    prepare_home(home)
    if args.data_root:
        os.environ["GIRAFFE_DATA_ROOT"] = str(Path(args.data_root).resolve())

    import dagster as dg

    from assets.defs.partitions import checkpoint_key
    from pipelines.console_log import error_summary
    from pipelines.runs import execute_job

    config = overrides(args)
    instance = dg.DagsterInstance.get()
    for stage in stages:
        key = checkpoint_key(args.recipe, stage)
        print(f"giraffe train: {args.recipe}|{stage} ({args.launcher}, {args.nproc} process(es))", flush=True)
        started = time.monotonic()
        result = execute_job(  # a run of the code location: listed under train_checkpoint in the UI
            instance, "train_checkpoint", partition_key=key,
            run_config={"ops": {"checkpoint": {"config": config}},
                        "loggers": {"console": {"config": {"log_level": args.log_level, "verbose": args.verbose}}}},
        )
        if not result.success:
            errors = [error_summary(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
            print(f"giraffe train: {args.recipe}|{stage} failed (run {result.run_id}): {' '.join(errors)}",
                  file=sys.stderr, flush=True)
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
    p = sub.add_parser(
        "train",
        help="train a recipe's stages in order (checkpoint assets through Pipes)",
        description="Train the stages of one recipe in progressive order, each from the previous stage's "
        "checkpoint, as checkpoint partitions of the project's Dagster instance (logs and metadata in the UI). "
        "The whole request is checked before the first stage starts.",
        epilog=recipes_help() + "\n\nexamples:\n"
        "  giraffe train --recipe mrope_pp                       every stage of the recipe\n"
        "  giraffe train --recipe mrope_pp --stages 32k          resume the progression at 32k (8k trained)\n"
        "  giraffe train --recipe v2pe --launcher torchrun --nproc 2 --steps 100\n"
        "  giraffe train --recipe mrope_pp --launcher deepspeed --nproc 8 --deepspeed-config zero3_offload \\\n"
        "      --sequence-parallel-size 4",
    )
    p.add_argument("--recipe", required=True, help="recipe name (listed below)")
    p.add_argument("--stages", help="comma-separated stages, in the recipe's order (default: all of the recipe's)")
    p.add_argument("--launcher", default="python", choices=LAUNCHERS, help="how the training job starts")
    p.add_argument("--nproc", type=positive_int, default=1, help="processes / GPUs (torchrun, deepspeed)")
    p.add_argument("--deepspeed-config", default="zero2", help="with deepspeed: zero2, zero3_offload or a JSON path")
    p.add_argument("--sequence-parallel-size", type=positive_int, default=1, help="Ulysses degree (deepspeed)")
    p.add_argument("--steps", type=positive_int, help="override the recipe's steps per stage")
    p.add_argument("--save-every", type=non_negative_int, default=2, help="resumable state every N steps (0: only at the end)")
    p.add_argument("--batch-source", default="packed", help="packed | file:<path> | module:function")
    p.add_argument("--data-root", type=writable_dir, help="data root (default ./data or $GIRAFFE_DATA_ROOT)")
    p.add_argument("--dagster-home", type=writable_dir, help="Dagster instance folder (default ./dagster_home or $DAGSTER_HOME)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="console log threshold")
    add_verbose(p)
    p.set_defaults(func=cmd_train)
