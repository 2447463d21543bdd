"""``python -m training --config run.json [--steps 8 ...]``: train one stage.

Also the module that ``torchrun -m training`` and ``deepspeed --module training`` start on
every rank. Exit status 2 means the configuration was rejected before anything was loaded.
"""

from __future__ import annotations

import argparse
import sys

from training.config import ConfigError, add_arguments, config_from_args, validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    add_arguments(parser)
    # the deepspeed launcher appends --local_rank=N (we read LOCAL_RANK from the environment)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--validate-only", action="store_true", help="check the config and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    from assets.contract.console import quiet_console

    quiet_console()  # as the launching CLI chose (GIRAFFE_VERBOSE), before transformers is imported
    args = build_parser().parse_args(argv)
    try:
        cfg = validate(config_from_args(args))
    except ConfigError as err:
        print(str(err), file=sys.stderr, flush=True)
        return 2
    if args.validate_only:
        print("config ok", flush=True)
        return 0
    from training.distributed import env_rank
    from training.report import pipes_active
    from training.trainer import train

    result = train(cfg)
    losses = [v for _, v in result.losses]
    if losses and env_rank() == 0 and not pipes_active():  # under Pipes the run's log already says it
        print(f"done: {result.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
