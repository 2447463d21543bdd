"""``giraffe datasets check FILE`` and the ``--datasets`` option of ``demo`` and ``sources``.

A declaration is validated before anything runs: a bad one prints one line naming the entry
and the field and exits 2. ``check`` is a dry run into a temporary folder: per entry, rows read,
conversations, rejections by reason and the first rendered samples; the declared folders and
the data root are left as they are.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from pipelines.cli_args import non_negative_int, positive_int

EXIT_BAD_DECLARATION = 2


def declared_file(args: argparse.Namespace) -> str | None:
    """The declarations file of this command: ``--datasets`` or ``$GIRAFFE_DATASETS``."""
    from assets.sources.declared import ENV_VAR

    return getattr(args, "datasets", None) or os.environ.get(ENV_VAR) or None


def validate_declarations(args: argparse.Namespace, export: bool = False) -> int:
    """0 when the declarations (if any) load, else print the one-line error and return 2. With
    ``export``, ``$GIRAFFE_DATASETS`` then names the file for the Dagster definitions."""
    from assets.sources.declared import ENV_VAR, DeclarationError, load_declarations

    path = declared_file(args)
    if not path:
        return 0
    try:
        load_declarations(path)
    except DeclarationError as exc:
        print(f"giraffe: bad dataset declaration: {exc}", file=sys.stderr)
        return EXIT_BAD_DECLARATION
    if export:
        os.environ[ENV_VAR] = str(Path(path).expanduser().resolve())
    return 0


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + f" [... {len(text) - limit} chars ...] " + text[-limit // 2 :]


def cmd_datasets_check(args: argparse.Namespace) -> int:
    from assets.chatml.normalize import accounting, records_in, write_chatml
    from assets.contract.chat_template import render_chatml
    from assets.sources.declared import DeclarationError, load_declarations
    from assets.sources.hub import HubSettings, fetch_source

    try:
        specs = load_declarations(args.file)
    except DeclarationError as exc:
        print(f"giraffe: bad dataset declaration: {exc}", file=sys.stderr)
        return EXIT_BAD_DECLARATION
    failed = False
    settings = HubSettings(mode="hub", token=os.environ.get("HF_TOKEN"), max_rows=args.max_rows)
    with tempfile.TemporaryDirectory(prefix="giraffe-datasets-check-") as tmp:
        root = Path(tmp)
        for spec in specs:
            where = spec.files_root or spec.hub_id
            print(f"{spec.name} ({spec.category}, {spec.task}) from {where}")
            try:
                fetched = fetch_source(spec, settings, root / "raw" / spec.name, root / "embedded")
                result = write_chatml(spec, root / "raw" / spec.name, root / "chatml" / spec.name, root / ".cache")
            except Exception as exc:  # reported per entry; the other entries are still checked
                print(f"  cannot read: {type(exc).__name__}: {exc}")
                failed = True
                continue
            ok, detail = accounting(result)
            print(f"  rows read: {records_in(result)} ({fetched.rows} decoded, {fetched.undecodable} undecodable)"
                  f"{' [record-by-record reader]' if fetched.fallback else ''}")
            print(f"  conversations: {len(result.conversations)}; rejected: {len(result.rejections)}")
            for reason, n in result.reasons().items():
                example = next(r for r in result.rejections if r.reason == reason)
                print(f"    {reason}: {n} (e.g. {_shorten(example.detail, 120)})")
            if not ok:
                print(f"  accounting does not add up: {detail}")
                failed = True
            for k, conv in enumerate(result.conversations[: args.samples]):
                print(f"  sample {k + 1} ({conv.sample_id}):")
                for line in _shorten(render_chatml(conv.messages), args.width).splitlines():
                    print(f"    {line}")
    return 1 if failed else 0


EXAMPLES = """examples:
  giraffe datasets check datasets.yaml
  giraffe datasets check data/dataset_info.json --max-rows 100 --samples 1
  GIRAFFE_DATASETS=datasets.yaml giraffe demo --job ingest_sources
"""


def add_datasets_parser(sub) -> None:
    p = sub.add_parser(
        "datasets",
        help="declared datasets (GIRAFFE_DATASETS): check a declaration file",
        description="Datasets declared in a file (our YAML, or a LLaMA-Factory dataset_info.json as is) "
        "become raw/<name> and chatml/<name> beside the registry's sources.",
        epilog=EXAMPLES,
    )
    dsub = p.add_subparsers(dest="datasets_command", required=True, metavar="<command>")
    c = dsub.add_parser(
        "check",
        help="dry run: rows read, conversations, rejections by reason, first samples",
        description="A dry run of every declared entry: rows read, conversations, rejections by reason and "
        "the first rendered samples. Nothing is written outside a temporary folder.",
        epilog=EXAMPLES,
    )
    c.add_argument("file", help="our datasets YAML or a LLaMA-Factory dataset_info.json")
    c.add_argument("--samples", type=non_negative_int, default=2, help="rendered samples to print per entry")
    c.add_argument("--max-rows", type=positive_int, default=None, help="read only the first rows of each entry (default: all)")
    c.add_argument("--width", type=positive_int, default=600, help="characters of each rendered sample to print")
    c.set_defaults(func=cmd_datasets_check)
