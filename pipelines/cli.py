"""The ``giraffe`` command line.

``giraffe demo`` materialises the whole graph (the README's main job) into the project's
Dagster instance, so the runs, metadata and lineage are there when the UI opens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from assets.contract.categories import CATEGORIES
from pipelines.instance import default_home, prepare_home
from pipelines.pack_cli import add_pack_parser
from pipelines.train_cli import add_train_parser
from pipelines.video_plan_cli import add_video_plan_parser
from training.positions.cli import add_rope_parser


def cmd_sources(args: argparse.Namespace) -> int:
    from assets.sources.registry import SOURCES

    rows = [s.describe() for s in SOURCES if not args.category or s.category == args.category]
    print(json.dumps(rows, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    home = Path(args.dagster_home).resolve() if args.dagster_home else default_home()
    prepare_home(home)
    if args.data_root:
        os.environ["GIRAFFE_DATA_ROOT"] = str(Path(args.data_root).resolve())
    if args.mode:
        os.environ["GIRAFFE_SOURCES_MODE"] = args.mode

    import dagster as dg

    from pipelines.definitions import build_definitions
    from pipelines.jobs import DEMO_SEQUENCE, demo_partition_keys
    from pipelines.runs import execute_job

    instance = dg.DagsterInstance.get()
    defs = build_definitions()
    started = time.monotonic()
    run_config = {"loggers": {"console": {"config": {"log_level": args.log_level}}}}
    rows, failed_checks, warned_checks, run_ids = [], [], [], []
    success = True
    # The default job is followed by the stage-partitioned jobs, one run per partition key.
    for name in DEMO_SEQUENCE if args.job == "giraffe_demo" else [args.job]:
        job = defs.resolve_job_def(name)
        keys = demo_partition_keys(job)
        for key in keys:
            label = f"'{name}'" + (f" partition {key}" if key else "")
            print(f"giraffe demo: materialising job {label} into {home}", flush=True)
            result = execute_job(instance, name, run_config, partition_key=key)  # a run of the code location
            run_ids.append(result.run_id)
            for event in result.get_asset_materialization_events():
                mat = event.event_specific_data.materialization
                md = {k: v.value for k, v in mat.metadata.items()}
                asset = mat.asset_key.to_user_string() + (f"[{mat.partition}]" if mat.partition else "")
                rows.append((asset, md.get("dagster/row_count", ""), md.get("rejected", "")))
            for e in result.all_events:
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed:
                    ev = e.event_specific_data
                    where = ev.asset_key.to_user_string() + (f"[{key}]" if key else "") + ":" + ev.check_name
                    # a WARN check reports what the data cannot do (shown, does not fail the demo)
                    (warned_checks if ev.severity.value == "WARN" else failed_checks).append(where)
            success = success and result.success
            if not result.success:
                break
        if not success:
            break
    seconds = time.monotonic() - started
    width = max((len(r[0]) for r in rows), default=10)
    print(f"\n{'asset'.ljust(width)}  rows  rejected")
    for key, n, rej in sorted(rows):
        print(f"{key.ljust(width)}  {str(n).rjust(4)}  {rej}")
    print(f"\n{len(rows)} assets materialised in {seconds:.1f} s; runs {', '.join(run_ids)}")
    if warned_checks:
        print("checks with warnings: " + ", ".join(warned_checks))
    if failed_checks:
        print("failed checks: " + ", ".join(failed_checks))
    board = Path(os.environ.get("GIRAFFE_DATA_ROOT", Path.cwd() / "data")) / "leaderboard" / "leaderboard.md"
    if board.is_file():
        print(f"\nLeaderboard ({board}; plots beside it and in the asset's metadata):\n")
        print(board.read_text())
    print(
        f"Open the UI on it: DAGSTER_HOME={home} .venv/bin/giraffe ui  (then http://127.0.0.1:3000: "
        "Lineage for the graph, Catalog > leaderboard for scores and plots)"
    )
    return 0 if success and not failed_checks else 1


def cmd_ui(args: argparse.Namespace) -> int:
    prepare_home(default_home())
    bin_dir = Path(sys.executable).parent
    os.execv(str(bin_dir / "dagster"), [str(bin_dir / "dagster"), "dev", "-p", str(args.port)])
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="giraffe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="materialise the whole graph on the embedded default")
    p.add_argument("--job", default="giraffe_demo", help="job to run (default: the whole graph, then every stage partition)")
    p.add_argument("--data-root", help="where tables and media go (default ./data or $GIRAFFE_DATA_ROOT)")
    p.add_argument("--dagster-home", help="Dagster instance folder (default ./dagster_home)")
    p.add_argument("--mode", choices=["embedded", "hub"], help="fetch sources from the hub instead")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sources", help="print the source registry as JSON")
    p.add_argument("--category", choices=CATEGORIES)
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser("ui", help="start the Dagster UI and daemon on this project's instance")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    add_rope_parser(sub)
    add_video_plan_parser(sub)
    add_pack_parser(sub)
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
