"""The ``giraffe`` command line.

``giraffe demo`` materialises the whole graph (the README's main job) into the project's
Dagster instance, so the runs, metadata and lineage are there when the UI opens. Every
sub-command checks its arguments before it starts anything: a bad request is one line on
stderr and exit status 2 (``pipelines.cli_args``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from assets.contract.categories import CATEGORIES
from pipelines.cli_args import Parser, add_verbose, package_version, writable_dir
from pipelines.datasets_cli import add_datasets_parser, declared_file, validate_declarations
from pipelines.instance import default_home, prepare_home
from pipelines.pack_cli import add_pack_parser
from pipelines.train_cli import add_train_parser
from pipelines.video_plan_cli import add_video_plan_parser
from training.positions.cli import add_rope_parser

DESCRIPTION = (
    "GIRAFFE: extend the context of a vision-language model as a Dagster asset graph.\n"
    "Every command checks its arguments first; a bad request is one line on stderr, exit status 2."
)
EPILOG = """examples:
  giraffe demo                       materialise the whole graph on the embedded sample (~3 min on CPU)
  giraffe ui                         open the Dagster UI on the same instance
  giraffe sources --category video   the video sources of the registry
  giraffe train --recipe mrope_pp    train every stage of a recipe
  giraffe <command> --help           the options of one command, with their defaults
"""

# The jobs of pipelines/jobs.py, spelled here so that building the parser does not import dagster
# (a second to import; `giraffe --help` stays instant). tests/test_cli.py checks they are equal.
JOB_NAMES: tuple[str, ...] = (
    "giraffe_demo", "ingest_sources", "refresh_sources", "shard_data", "stage_data", "train_and_eval",
    "train_checkpoint", "evaluate_checkpoint", "report",
)


# -- giraffe sources -----------------------------------------------------------------------------


def cmd_sources(args: argparse.Namespace) -> int:
    from assets.sources.declared import all_sources

    if validate_declarations(args):
        return 2
    specs = [s for s in all_sources(declared_file(args)) if not args.category or s.category == args.category]
    if args.json:
        print(json.dumps([s.describe() for s in specs], indent=None if args.compact else 2))
        return 0
    rows = [
        {
            "name": s.name,
            "category": s.category,
            "hub repository": s.hub_id,
            "files": ", ".join(s.data_files),
            "media": s.media.kind,
            "license": s.license or "-",
        }
        for s in specs
    ]
    print(text_table(rows))
    print(f"\n{len(rows)} source(s); giraffe sources --json for loaders, adapters and media patterns")
    return 0


def text_table(rows: list[dict], max_width: int = 48) -> str:
    """Rows as aligned plain-text columns (the console has no markdown renderer)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])

    def cell(value) -> str:
        text = str(value)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    widths = {c: max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(cell(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


# -- giraffe demo --------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    if validate_declarations(args, export=True):  # before anything runs or is created
        return 2
    home = Path(args.dagster_home).resolve() if args.dagster_home else default_home()
    prepare_home(home)
    if args.data_root:
        os.environ["GIRAFFE_DATA_ROOT"] = str(Path(args.data_root).resolve())
    if args.mode:
        os.environ["GIRAFFE_SOURCES_MODE"] = args.mode

    import dagster as dg

    from pipelines.console_log import error_summary, with_compact_console
    from pipelines.definitions import build_definitions
    from pipelines.jobs import demo_jobs, demo_partition_keys
    from pipelines.runs import execute_job

    instance = dg.DagsterInstance.get()
    defs = build_definitions()
    started = time.monotonic()
    run_config = {"loggers": {"console": {"config": {"log_level": args.log_level, "verbose": args.verbose}}}}
    rows, failed_checks, warned_checks, run_ids = [], [], [], []
    errors: list[str] = []
    success = True
    # The default job is followed by the shard- and stage-partitioned jobs, one run per partition key.
    for name in demo_jobs(args.job):
        job = with_compact_console(defs.resolve_job_def(name))
        keys = demo_partition_keys(job)
        for key in keys:
            label = f"'{name}'" + (f" partition {key}" if key else "")
            print(f"giraffe demo: materialising job {label}", flush=True)
            result = execute_job(instance, name, run_config, partition_key=key)  # a run of the code location
            run_ids.append(result.run_id)
            for event in result.get_asset_materialization_events():
                mat = event.event_specific_data.materialization
                md = {k: v.value for k, v in mat.metadata.items()}
                rows.append((mat.asset_key.to_user_string(), mat.partition, md.get("dagster/row_count"), md.get("rejected")))
            for e in result.all_events:
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed:
                    ev = e.event_specific_data
                    where = ev.asset_key.to_user_string() + (f"[{key}]" if key else "") + ":" + ev.check_name
                    # a WARN check reports what the data cannot do (shown, does not fail the demo)
                    (warned_checks if ev.severity.value == "WARN" else failed_checks).append(where)
                if e.is_step_failure:
                    errors.append(f"{e.step_key} in run {result.run_id}: {error_summary(e.event_specific_data.error)}")
            success = success and result.success
            if not result.success:
                break
        if not success:
            break
    seconds = time.monotonic() - started
    print()
    print(text_table(summary_rows(rows)))
    print(f"\n{len(rows)} materialisations of {len({r[0] for r in rows})} assets in {seconds:.1f} s; "
          f"{len(run_ids)} runs in {home}")
    if warned_checks:
        print("checks with warnings: " + ", ".join(warned_checks))
    if failed_checks:
        print("failed checks: " + ", ".join(failed_checks))
    for error in errors:
        print(f"failed: {error}")
    board = Path(os.environ.get("GIRAFFE_DATA_ROOT", Path.cwd() / "data")) / "leaderboard" / "leaderboard.md"
    if success and board.is_file():
        print(f"\nLeaderboard ({board}; plots beside it and in the asset's metadata):\n")
        print(board.read_text())
    print(
        f"Open the UI on it: DAGSTER_HOME={home} .venv/bin/giraffe ui  (then http://127.0.0.1:3000: "
        "Lineage for the graph, Catalog > leaderboard for scores and plots)"
    )
    return 0 if success and not failed_checks else 1


def summary_rows(rows: list[tuple]) -> list[dict]:
    """One line per asset family (``raw/*``, ``eval/*``, ``packed``, ...): how many assets and
    partitions were materialised and their rows; the per-asset detail is in the UI."""
    families: dict[str, dict] = {}
    for key, partition, n_rows, rejected in rows:
        family = key.split("/", 1)[0] + ("/*" if "/" in key else "")
        f = families.setdefault(family, {"assets": set(), "partitions": set(), "rows": None, "rejected": None})
        f["assets"].add(key)
        if partition:
            f["partitions"].add(str(partition))
        if isinstance(n_rows, (int, float)):
            f["rows"] = (f["rows"] or 0) + int(n_rows)
        if isinstance(rejected, (int, float)):
            f["rejected"] = (f["rejected"] or 0) + int(rejected)
    return [
        {
            "asset": family,
            "assets": len(f["assets"]),
            "partitions": len(f["partitions"]) or "-",
            "rows": "-" if f["rows"] is None else f["rows"],
            "rejected": "-" if f["rejected"] is None else f["rejected"],
        }
        for family, f in families.items()
    ]


# -- giraffe ui ----------------------------------------------------------------------------------


def cmd_ui(args: argparse.Namespace) -> int:
    prepare_home(default_home())
    bin_dir = Path(sys.executable).parent
    os.execv(str(bin_dir / "dagster"), [str(bin_dir / "dagster"), "dev", "-p", str(args.port)])
    return 0  # pragma: no cover


def port(text: str) -> int:
    from pipelines.cli_args import positive_int

    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {text}")
    return value


# -- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="giraffe", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"giraffe {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = sub.add_parser(
        "demo",
        help="materialise the whole graph on the embedded sample",
        description="Materialise a job into the project's Dagster instance and print a summary. The default "
        "runs the unpartitioned graph, then shard_data for every shard, stage_data for every stage, train_and_eval for every recipe "
        "stage and the report; a partitioned job runs once per partition.",
        epilog="examples:\n"
        "  giraffe demo\n"
        "  giraffe demo --job ingest_sources --data-root /data/giraffe\n"
        "  giraffe demo --mode hub           (real sources from the Hugging Face Hub; set HF_TOKEN)\n"
        "  giraffe demo --verbose            (library progress bars and notices too)",
    )
    p.add_argument("--job", default="giraffe_demo", choices=JOB_NAMES, metavar="JOB",
                   help=f"job to run: {', '.join(JOB_NAMES)}")
    p.add_argument("--data-root", type=writable_dir, help="where tables and media go (default ./data or $GIRAFFE_DATA_ROOT)")
    p.add_argument("--dagster-home", type=writable_dir, help="Dagster instance folder (default ./dagster_home or $DAGSTER_HOME)")
    p.add_argument("--mode", choices=["embedded", "hub"], help="where sources come from (default embedded or $GIRAFFE_SOURCES_MODE)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="console log threshold")
    p.add_argument("--datasets", help="declared datasets file (YAML or LLaMA-Factory dataset_info.json; default $GIRAFFE_DATASETS)")
    add_verbose(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "sources",
        help="list the source registry (a table, or JSON)",
        description="The ETVLM sources of the paper's Table 7: where each lives on the hub, its files, media and licence.",
        epilog="examples:\n  giraffe sources\n  giraffe sources --category video\n  giraffe sources --json --compact",
    )
    p.add_argument("--category", choices=CATEGORIES, help="only this category")
    p.add_argument("--json", action="store_true", help="the full registry entries as JSON")
    p.add_argument("--compact", action="store_true", help="with --json: one line")
    p.add_argument("--datasets", help="also list the datasets declared in this file (default $GIRAFFE_DATASETS)")
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser(
        "ui",
        help="start the Dagster UI and daemon on this project's instance",
        description="Start dagster dev (UI and daemon) on the project's instance (./dagster_home or $DAGSTER_HOME).",
        epilog="example:\n  giraffe ui --port 3001",
    )
    p.add_argument("--port", type=port, default=3000, help="TCP port of the UI")
    p.set_defaults(func=cmd_ui)
    add_datasets_parser(sub)
    add_rope_parser(sub)
    add_video_plan_parser(sub)
    add_pack_parser(sub)
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from assets.contract.console import quiet_console

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version and refused arguments
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    quiet_console(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except BrokenPipeError:  # `giraffe sources | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
