"""The leaderboard asset: every evaluated model x benchmark, each benchmark's plots and tables,
and the short-context regression check (WARN) against the base model."""

import json
from pathlib import Path

import dagster as dg

from assets.contract.atomic import write_bytes, write_text
from assets.contract.layout import BASE_MODEL_REF
from assets.contract.markdown import markdown_table, png_markdown
from assets.defs.evaluation import method_of
from assets.defs.keys import EVAL_BASE_KEY, LEADERBOARD_GROUP, LEADERBOARD_KEY, LMMS_EVAL_KEY, eval_key
from assets.defs.lmms_eval import LMMS_EVAL_ENABLED
from assets.defs.metadata import EVAL_TEAM
from assets.defs.partitions import RECIPES, STAGES
from assets.defs.resources import DataStore
from eval import leaderboard as lb
from eval.benchmarks import BENCHMARKS
from eval.scoring import EFFECTIVE_THRESHOLD
from training.tiny_model import base_record, original_length

REGRESSION_CHECK = "short_context_regression"
# Bump when the board (rows, plots, the check) changes for the same scores.
LEADERBOARD_CODE_VERSION = "1"


class LeaderboardConfig(dg.Config):
    regression_tolerance_pp: float = 2.0
    """Allowed drop of an extended checkpoint vs its base on MME (% of max) and MMBench, in points."""
    effective_threshold: float = EFFECTIVE_THRESHOLD


def lmms_rows(eval_root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((eval_root / "lmms_eval").glob("**/leaderboard_row.json"))]


def base_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def table_value(rows: list[dict]) -> dg.TableMetadataValue:
    """The leaderboard as a table the UI shows inline (markdown over 1000 characters only gets
    a "Show Markdown" button), with every column's full name and its description."""
    shown, table = lb.display_rows(rows)
    schema = dg.TableSchema(columns=[dg.TableColumn(c.header, "string", description=c.description or None) for c in shown])
    return dg.MetadataValue.table(records=[dg.TableRecord(r) for r in table], schema=schema)


@dg.asset(
    key=LEADERBOARD_KEY,
    group_name=LEADERBOARD_GROUP,
    code_version=LEADERBOARD_CODE_VERSION,
    owners=[EVAL_TEAM],
    deps=[*[eval_key(s.name) for s in BENCHMARKS], EVAL_BASE_KEY, *([LMMS_EVAL_KEY] if LMMS_EVAL_ENABLED else [])],
    kinds={"matplotlib"},
    check_specs=[
        dg.AssetCheckSpec(
            REGRESSION_CHECK,
            asset=LEADERBOARD_KEY,
            description="WARN when an extended checkpoint loses more than the tolerance on MME or MMBench vs its base.",
        )
    ],
    description="All evaluated models x benchmarks (markdown), Visual Haystack accuracy vs number of images "
    "per checkpoint/method, Video-MME by duration (PNG), and the short-context regression check.",
)
def leaderboard(context: dg.AssetExecutionContext, config: LeaderboardConfig, store: DataStore) -> dg.MaterializeResult:
    eval_root = store.layout.eval_root
    results = lb.collect(eval_root, [s.name for s in BENCHMARKS])
    labels = {m: (lb.method_label(None) if m == lb.BASE else method_of(m.split("/")[0])) for m in results}
    rows = [lb.row_for(m, s, labels[m]) for m, s in results.items()] + lmms_rows(eval_root)
    rows = lb.sort_rows(rows, STAGES)
    base = base_config(store.layout.base_model)
    banner = lb.base_banner(base_record(base))
    plots = lb.plots(results, rows, labels, config.effective_threshold, {"original_length": original_length(base)})
    out = store.stage_dir("leaderboard")
    for key, _, png in plots:
        write_bytes(out / f"{key}.png", png)
    table = lb.markdown(rows, banner)
    for note in lb.mode_notes(rows):
        table += "\n\n" + note
    write_text(out / "leaderboard.md", table + "\n")
    write_text(out / "leaderboard.json", json.dumps(rows, indent=1))
    base_of = {
        r["model"]: (lb.BASE if RECIPES.get(r["model"].split("/")[0]) and RECIPES[r["model"].split("/")[0]].base_model == BASE_MODEL_REF else None)
        for r in rows
        if r["model"] != lb.BASE
    }
    comparisons, regressions = lb.short_context_regressions(rows, base_of, config.regression_tolerance_pp)
    context.log.info(f"leaderboard: {len(rows)} rows, {len(regressions)} short-context regression(s)")
    check = dg.AssetCheckResult(
        check_name=REGRESSION_CHECK,
        passed=not regressions,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "tolerance_pp": config.regression_tolerance_pp,
            "regressions": len(regressions),
            "comparisons": dg.MetadataValue.md(markdown_table(comparisons) if comparisons else "_(no checkpoint evaluated yet)_"),
        },
    )
    return dg.MaterializeResult(
        metadata={  # the table first: the UI lists metadata in this order
            "leaderboard": table_value(rows) if rows else dg.MetadataValue.text("(nothing evaluated yet)"),
            **({"base_model": dg.MetadataValue.text(banner)} if banner else {}),
            "leaderboard_markdown": dg.MetadataValue.md(table),
            "models": len(results),
            **{key: dg.MetadataValue.md(png_markdown(png, title)) for key, title, png in plots},
            **{key: dg.MetadataValue.md(text) for key, text in lb.tables(rows)},
            "path": dg.MetadataValue.path(str(out)),
        },
        check_results=[check],
    )
