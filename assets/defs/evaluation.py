"""Evaluation assets: every benchmark on every checkpoint, and on the base model.

Thin Dagster wrappers over ``eval/`` (plain Python):

* ``eval/<name>`` (group ``evaluation``): one partition per checkpoint (the ``recipe|stage``
  pairs the recipes train, ``assets.defs.partitions.checkpoint_partitions``), identity-mapped to the ``checkpoint`` asset's
  partition and eager: when a checkpoint partition materialises (or the benchmark data
  changes), that partition's evaluations are requested. Predictions (raw outputs kept) and
  scores go to ``<data>/eval/<name>/<recipe>/<stage>/``.
* ``eval_base`` (group ``leaderboard``): every benchmark on ``model/base``, the reference for
  the short-context regression check. One unpartitioned asset rather than a base partition:
  the base is not a recipe|stage, so a partition for it would fake a checkpoint, and one asset
  loads the base once for all benchmarks; its results land beside the checkpoints' as
  ``<data>/eval/<name>/base/``.

Benchmark data is ``assets.defs.benchmarks``, the leaderboard ``assets.defs.leaderboard``, the
lmms-eval run ``assets.defs.lmms_eval``. Lineage in the UI: leaderboard -> eval/<name> ->
checkpoint (-> shards -> raw) and eval/<name> -> benchmark/<name>.
"""

import json
import time
from typing import Optional

import dagster as dg
import pyarrow as pa
from pydantic import Field

from assets.contract.atomic import write_parquet, write_text
from assets.contract.markdown import counts_table, markdown_table
from assets.contract.progress import duration, rate
from assets.defs.keys import BASE_MODEL_KEY, CHECKPOINT_KEY, EVAL_BASE_KEY, EVAL_GROUP, LEADERBOARD_GROUP, benchmark_key, eval_key
from assets.defs.metadata import EVAL_TEAM, as_metadata, column_schema
from assets.defs.partitions import RECIPES, checkpoint_partitions, split_checkpoint_key
from assets.defs.resources import DataStore, SourceHub
from assets.defs.video import VideoSamplingParams
from eval import leaderboard as lb
from eval.benchmarks import BENCHMARKS, Benchmark
from eval.formats import limit_per_split
from eval.items import PREDICTION_SCHEMA, EvalItem, read_items
from eval.runner import EMBEDDED_ANSWER_MODE, SCORED_MODES, RunConfig, Runner
from eval.scoring import EFFECTIVE_THRESHOLD
from training.tiny_model import original_length

# embedded clips are 128x96: a small per-frame budget keeps the tiny-model demo cheap
EMBEDDED_VIDEO_PIXELS = (16 * 28 * 28, 64 * 28 * 28)
# Bump when an evaluation's output changes for the same inputs (scoring, metadata).
EVAL_CODE_VERSION = "1"


class EvalConfig(dg.Config):
    batch_size: int = 4
    max_new_tokens: int = 8
    max_items_per_split: Optional[int] = None
    video: VideoSamplingParams = Field(
        default_factory=VideoSamplingParams,
        description="How benchmark videos are sampled; pixel budgets left unset are Qwen2-VL's on hub data "
        "and 16..64 x 28^2 on the embedded clips.",
    )
    effective_threshold: float = EFFECTIVE_THRESHOLD
    device: Optional[str] = None
    samples_in_metadata: int = 8
    answer_mode: Optional[str] = None
    """``generate`` (greedy decoding + parsing: the paper's protocol), ``likelihood`` (argmax of
    each candidate answer's log-probability, lm-eval-harness multiple choice: Yes/No or the option
    letters) or ``cloze`` (the same, with each option's text as the candidate, per byte: OLMES's
    cloze formulation). None: generate on hub data, cloze on the embedded demo (its tiny model
    never writes a parseable answer, and picks letters at chance while it knows the answers:
    ``eval.runner``)."""

    def resolved_answer_mode(self, mode: str) -> str:
        return self.answer_mode or (EMBEDDED_ANSWER_MODE if mode == "embedded" else "generate")

    def run_config(self, mode: str) -> RunConfig:
        return RunConfig(
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            video=self.video.sampling(EMBEDDED_VIDEO_PIXELS if mode == "embedded" else None),
            answer_mode=self.resolved_answer_mode(mode),
        )


def evaluate(
    context: dg.AssetExecutionContext,
    spec: Benchmark,
    runner: Runner,
    store: DataStore,
    config: EvalConfig,
    model_info: dict,
) -> tuple[list[dict], dict]:
    """Run one benchmark with a loaded runner; write predictions + scores; (rows, summary)."""
    items_path = store.layout.benchmark_items(spec.name)
    if not items_path.is_file():
        raise dg.Failure(f"{items_path} is missing: materialise {benchmark_key(spec.name).to_user_string()} first")
    items: list[EvalItem] = limit_per_split(read_items(items_path), config.max_items_per_split, 0)
    started = time.monotonic()
    rows = runner.run(items)
    seconds = time.monotonic() - started
    summary = spec.summarize(rows, config.effective_threshold) | model_info
    summary |= {"answer_mode": runner.cfg.answer_mode, "original_length": original_length(runner.model.config)}
    accuracy = "-" if summary["accuracy"] is None else f"{100 * summary['accuracy']:.1f}%"
    context.log.info(
        f"{spec.name} on {runner.model_id}: accuracy {accuracy} over {len(items)} items in {duration(seconds)}, "
        f"{rate(len(items), seconds, 'items')} ({runner.cfg.answer_mode}; "
        + ", ".join(f"{k} {v}" for k, v in summary["status"].items()) + ")"
    )
    out = lb.model_dir(store.layout.eval_root, spec.name, runner.model_id)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), out / "predictions.parquet")
    write_text(out / "scores.json", json.dumps(summary, indent=1, default=str))
    return rows, summary


def _split_table(summary: dict, label: str) -> str:
    rows = [
        {label: k, "accuracy (%)": None if v["accuracy"] is None else round(100 * v["accuracy"], 1), "items": v["n"]}
        for k, v in summary["by_split"].items()
    ]
    return markdown_table(rows)


def _logprobs(row: dict) -> str:
    scores = json.loads(row.get("extra") or "{}").get("candidate_logprobs")
    return " ".join(f"{k}:{v:.2f}" for k, v in scores.items()) if scores else ""


def eval_metadata(spec: Benchmark, rows: list[dict], summary: dict, samples: int) -> dict:
    scored = summary.get("answer_mode") in SCORED_MODES
    md: dict = {
        "accuracy": None if summary["accuracy"] is None else round(100 * summary["accuracy"], 2),
        "answer_mode": summary.get("answer_mode", "generate"),
        "items": summary["n"],
        "dagster/row_count": summary["n"],
        "dagster/column_schema": column_schema(PREDICTION_SCHEMA),
        "status": dg.MetadataValue.md(counts_table(summary["status"], "status", "items")),
        f"accuracy_by_{spec.split_label}": dg.MetadataValue.md(_split_table(summary, spec.split_label)),
        "samples": dg.MetadataValue.md(
            markdown_table(
                [
                    {
                        "item_id": r["item_id"],
                        spec.split_label: r["split"],
                        "answer": r["answer"],
                        "parsed": r["prediction"],
                        "status": r["status"],
                        "raw_output": repr(r["raw_output"])[:80],
                        "tokens": r["n_prompt_tokens"],
                        **({"logprobs": _logprobs(r)} if scored else {}),
                    }
                    for r in rows[:samples]
                ],
                width=90,
            )
        ),
    }
    md.update(as_metadata(spec.metadata(summary)))
    return md


def method_of(recipe: str) -> str:
    r = RECIPES.get(recipe)
    return lb.method_label(r.method) if r else "?"


def _eval_asset(spec: Benchmark) -> dg.AssetsDefinition:
    @dg.asset(
        key=eval_key(spec.name),
        group_name=EVAL_GROUP,
        code_version=EVAL_CODE_VERSION,
        owners=[EVAL_TEAM],
        metadata={"dagster/column_schema": column_schema(PREDICTION_SCHEMA)},
        partitions_def=checkpoint_partitions,
        deps=[
            dg.AssetDep(CHECKPOINT_KEY, partition_mapping=dg.IdentityPartitionMapping()),
            dg.AssetDep(benchmark_key(spec.name)),
        ],
        kinds={"pytorch", "parquet"},
        description=f"{spec.title} on one checkpoint (recipe|stage) loaded with its position method; "
        "greedy decoding with parsed answers (hub) or candidate log-likelihoods (embedded demo; config "
        "answer_mode), raw outputs kept; scores by "
        f"{spec.split_label}. {spec.paper}.",
    )
    def _asset(context: dg.AssetExecutionContext, config: EvalConfig, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
        if not context.has_partition_key:
            raise dg.Failure(f"{eval_key(spec.name).to_user_string()} is partitioned by recipe|stage: run it for a checkpoint partition")
        recipe, stage = split_checkpoint_key(context.partition_key)
        path = store.layout.checkpoint(recipe, stage)
        if not (path / "config.json").is_file():
            raise dg.Failure(f"no checkpoint at {path}: materialise checkpoint partition {context.partition_key} first")
        model = lb.model_id(recipe, stage)
        runner = Runner.from_checkpoint(path, model, config.run_config(hub.mode), log=context.log.info, device=config.device)
        info = {"model": model, "recipe": recipe, "stage": stage, "method": method_of(recipe), "checkpoint": str(path)}
        rows, summary = evaluate(context, spec, runner, store, config, info)
        md = eval_metadata(spec, rows, summary, config.samples_in_metadata)
        md.update(checkpoint=dg.MetadataValue.path(str(path)), method=info["method"])
        return dg.MaterializeResult(metadata=md)

    _asset.__name__ = f"eval_{spec.name}"
    return _asset


eval_assets = [_eval_asset(spec) for spec in BENCHMARKS]


@dg.asset(
    key=EVAL_BASE_KEY,
    group_name=LEADERBOARD_GROUP,
    code_version=EVAL_CODE_VERSION,
    owners=[EVAL_TEAM],
    metadata={"dagster/column_schema": column_schema(PREDICTION_SCHEMA)},
    deps=[BASE_MODEL_KEY, *[benchmark_key(s.name) for s in BENCHMARKS]],
    kinds={"pytorch", "parquet"},
    description="Every benchmark on model/base (loaded once): the reference row of the leaderboard and "
    "of the short-context regression check.",
)
def eval_base(context: dg.AssetExecutionContext, config: EvalConfig, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
    path = store.layout.base_model
    runner = Runner.from_checkpoint(path, lb.BASE, config.run_config(hub.mode), log=context.log.info, device=config.device)
    info = {"model": lb.BASE, "recipe": None, "stage": None, "method": lb.method_label(None), "checkpoint": str(path)}
    table, md = [], {}
    for spec in BENCHMARKS:
        rows, summary = evaluate(context, spec, runner, store, config, info)
        table.append(
            {
                "benchmark": spec.name,
                "items": summary["n"],
                "accuracy (%)": None if summary["accuracy"] is None else round(100 * summary["accuracy"], 1),
                "status": ", ".join(f"{k} {v}" for k, v in summary["status"].items()),
            }
        )
        shown = spec.metadata(summary)
        md.update(as_metadata({k: shown[k] for k in spec.base_metadata_keys}))
    md["scores"] = dg.MetadataValue.md(markdown_table(table))
    md["dagster/row_count"] = sum(r["items"] for r in table)  # predictions over every benchmark
    md["dagster/column_schema"] = column_schema(PREDICTION_SCHEMA)
    md["answer_mode"] = runner.cfg.answer_mode
    md["checkpoint"] = dg.MetadataValue.path(str(path))
    return dg.MaterializeResult(metadata=md)
