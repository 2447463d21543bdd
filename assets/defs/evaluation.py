"""Evaluation assets: benchmark data, per-checkpoint evaluations, the base model, the leaderboard.

Thin Dagster wrappers over ``eval/`` (plain Python):

* ``benchmark/<name>`` (group ``benchmarks``): the benchmark in its published format from the
  hub or the embedded sample, normalised to ``items.parquet`` + ``rejected.parquet``.
* ``eval/<name>`` (group ``evaluation``): one partition per checkpoint (``recipe|stage``,
  ``assets.defs.partitions.checkpoint_partitions``), identity-mapped to the ``checkpoint`` asset's
  partition and eager: when a checkpoint partition materialises (or the benchmark data
  changes), that partition's evaluations are requested. Predictions (raw outputs kept) and
  scores go to ``<data>/eval/<name>/<recipe>/<stage>/``.
* ``eval_base`` (group ``leaderboard``): every benchmark on ``model/base``, the reference for
  the short-context regression check. One unpartitioned asset rather than a base partition:
  the base is not a recipe|stage, so a partition for it would fake a checkpoint, and one asset
  loads the base once for all benchmarks; its results land beside the checkpoints' as
  ``<data>/eval/<name>/base/``.
* ``leaderboard`` (group ``leaderboard``): every evaluated model x benchmark as a markdown
  table, the Visual Haystack curve and the VideoMME-by-duration plot (PNG, embedded in the
  metadata), and the check ``short_context_regression`` (WARN) on MME/MMBench vs the base.
* ``eval/lmms_eval`` (group ``lmms_eval``, only when lmms-eval is installed; run on demand):
  lmms-eval's standard tasks through Dagster Pipes; its rows join the leaderboard as
  ``source=lmms-eval``.

Lineage in the UI: leaderboard -> eval/<name> -> checkpoint (-> shards -> raw, built by the
training assets) and eval/<name> -> benchmark/<name>.
"""

import json
import sys
from pathlib import Path
from typing import Optional

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from assets.contract.markdown import counts_table, markdown_table, png_markdown
from assets.defs.model import BASE_MODEL_KEY
from assets.defs.partitions import CHECKPOINT_KEY, RECIPES, STAGES, checkpoint_dir, checkpoint_partitions
from assets.defs.resources import DataStore, SourceHub
from eval import leaderboard as lb
from eval import lmms
from eval.benchmarks import BENCHMARKS, BenchmarkSpec
from eval.fetch import fetch_benchmark
from eval.formats import FetchOptions, limit_per_split
from eval.items import PREDICTION_SCHEMA, EvalItem, read_items
from eval.runner import RunConfig, Runner, VideoEvalConfig
from eval.scoring import EFFECTIVE_THRESHOLD, summarize

BENCHMARK_GROUP = "benchmarks"
EVAL_GROUP = "evaluation"
LEADERBOARD_GROUP = "leaderboard"
LMMS_EVAL_GROUP = "lmms_eval"  # on demand only: not in the automatic per-checkpoint evaluations
EVAL_BASE_KEY = dg.AssetKey(["eval_base"])
LEADERBOARD_KEY = dg.AssetKey(["leaderboard"])
LMMS_EVAL_KEY = dg.AssetKey(["eval", "lmms_eval"])
REGRESSION_CHECK = "short_context_regression"
# embedded clips are 128x96: a small per-frame budget keeps the tiny-model demo cheap
EMBEDDED_VIDEO_PIXELS = (16 * 28 * 28, 64 * 28 * 28)
EMBEDDED_ITEMS_PER_SIZE, HUB_ITEMS_PER_SIZE = 2, 100_000  # hub: as many as each file holds


def benchmark_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["benchmark", name])


def eval_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["eval", name])


# ----------------------------------------------------------------------------- configs


class BenchmarkConfig(dg.Config):
    max_items_per_split: Optional[int] = None
    """Cap per split (VideoMME duration, MME category, ...); MME image pairs stay whole."""
    seed: int = 0


class HaystackConfig(BenchmarkConfig):
    haystack_sizes: list[int] = [1, 2, 3, 5, 10, 25, 50, 100, 150]
    """Numbers of images (paper Figure 4: 1-150); counts without a published file are subsampled."""
    items_per_size: Optional[int] = None
    """Items per count, balanced yes/no; None: every entry of the file on the hub (100 per
    count), 2 on the embedded sample (one yes, one no: the demo's curve, kept cheap)."""
    image_size: int = 56
    """Embedded sample only: side of the drawn images (56 px = 4 visual tokens)."""
    image_root: Optional[str] = None
    """Hub mode: the folder the files' image paths are relative to (COCO 2017, see the dataset card)."""


class EvalConfig(dg.Config):
    batch_size: int = 4
    max_new_tokens: int = 8
    max_items_per_split: Optional[int] = None
    video_fps: float = 2.0
    video_frames: Optional[int] = None
    """A fixed frame count per video instead of ``video_fps`` sampling."""
    video_max_frames: int = 768
    video_min_pixels: Optional[int] = None
    """Per-frame pixel budget; None: Qwen2-VL's (128..768 x 28^2) on hub data, 16..64 x 28^2 on the embedded clips."""
    video_max_pixels: Optional[int] = None
    video_resize: str = "torch"
    """torch: torchvision's bicubic antialias (qwen-vl-utils' pixels); pil: PIL bicubic."""
    hybrid: bool = True
    """Hybrid resolution (L, m, s) above ``hybrid_min_frames`` sampled frames (paper: 512)."""
    hybrid_L: int = 4
    hybrid_m: int = 240
    hybrid_s: float = 3.0
    hybrid_min_frames: int = 512
    effective_threshold: float = EFFECTIVE_THRESHOLD
    device: Optional[str] = None
    samples_in_metadata: int = 8
    answer_mode: Optional[str] = None
    """``generate`` (greedy decoding + parsing: the paper's protocol) or ``likelihood`` (argmax of
    each candidate answer's log-probability, lm-eval-harness multiple choice). None: generate on
    hub data, likelihood on the embedded demo (its tiny random model never writes an answer)."""

    def resolved_answer_mode(self, mode: str) -> str:
        return self.answer_mode or ("likelihood" if mode == "embedded" else "generate")

    def run_config(self, mode: str) -> RunConfig:
        lo, hi = EMBEDDED_VIDEO_PIXELS if mode == "embedded" else (None, None)
        defaults = VideoEvalConfig()
        video = VideoEvalConfig(
            fps=self.video_fps,
            frames=self.video_frames,
            max_frames=self.video_max_frames,
            min_pixels=self.video_min_pixels or lo or defaults.min_pixels,
            max_pixels=self.video_max_pixels or hi or defaults.max_pixels,
            hybrid=(self.hybrid_L, self.hybrid_m, self.hybrid_s) if self.hybrid else None,
            hybrid_min_frames=self.hybrid_min_frames,
            resize=self.video_resize,
        )
        return RunConfig(
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            video=video,
            answer_mode=self.resolved_answer_mode(mode),
        )


class LeaderboardConfig(dg.Config):
    regression_tolerance_pp: float = 2.0
    """Allowed drop of an extended checkpoint vs its base on MME (% of max) and MMBench, in points."""
    effective_threshold: float = EFFECTIVE_THRESHOLD


class LmmsEvalConfig(dg.Config):
    tasks: list[str] = list(lmms.DEFAULT_TASKS)
    batch_size: int = 1
    limit: Optional[int] = None
    model_args: str = ""


# ----------------------------------------------------------------------------- benchmark data


def _benchmark_asset(spec: BenchmarkSpec) -> dg.AssetsDefinition:
    config_cls = HaystackConfig if spec.name == "visual_haystack" else BenchmarkConfig

    @dg.asset(
        key=benchmark_key(spec.name),
        group_name=BENCHMARK_GROUP,
        kinds={"parquet", "huggingface"},
        description=f"{spec.title} ({spec.hub_id}) in its published format, normalised to items.parquet "
        f"(prompt as lmms-eval builds it, media as local paths) + rejected.parquet. {spec.paper}.",
    )
    def _asset(context: dg.AssetExecutionContext, config: config_cls, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
        extra = {}
        if isinstance(config, HaystackConfig):
            per_size = config.items_per_size or (EMBEDDED_ITEMS_PER_SIZE if hub.mode == "embedded" else HUB_ITEMS_PER_SIZE)
            extra = dict(
                haystack_sizes=tuple(config.haystack_sizes),
                items_per_size=per_size,
                image_size=config.image_size,
                image_root=config.image_root,
            )
        options = FetchOptions(max_items_per_split=config.max_items_per_split, seed=config.seed, **extra)
        out = store.stage_dir("benchmarks", spec.name)
        fetched = fetch_benchmark(spec, hub.settings(), out, store.embedded_root, options)
        context.log.info(f"{spec.name}: {len(fetched.items)} items from {fetched.rows_in} rows ({fetched.mode}: {fetched.location})")
        preview = [
            {
                "item_id": i.item_id,
                spec.split_label: i.split,
                "answer": i.answer,
                "media": i.video or f"{i.n_images} image(s)",
                "prompt": i.prompt.replace("\n", " / "),
            }
            for i in fetched.items[:6]
        ]
        return dg.MaterializeResult(
            metadata={
                "mode": fetched.mode,
                "hub_id": spec.hub_id,
                "location": fetched.location,
                "rows_in": fetched.rows_in,
                "items": len(fetched.items),
                "rejected": len(fetched.rejected),
                "dagster/row_count": len(fetched.items),
                f"items_by_{spec.split_label}": dg.MetadataValue.md(counts_table(fetched.by_split(), spec.split_label, "items")),
                "rejected_by_reason": dg.MetadataValue.md(counts_table(fetched.reasons())),
                "preview": dg.MetadataValue.md(markdown_table(preview, width=120)),
                "items_path": dg.MetadataValue.path(str(fetched.items_path)),
            }
        )

    _asset.__name__ = f"benchmark_{spec.name}"
    return _asset


benchmark_assets = [_benchmark_asset(spec) for spec in BENCHMARKS]


# ----------------------------------------------------------------------------- running


def evaluate(
    context: dg.AssetExecutionContext,
    spec: BenchmarkSpec,
    runner: Runner,
    store: DataStore,
    config: EvalConfig,
    model_info: dict,
) -> tuple[list[dict], dict]:
    """Run one benchmark with a loaded runner; write predictions + scores; (rows, summary)."""
    items_path = store.path / "benchmarks" / spec.name / "items.parquet"
    if not items_path.is_file():
        raise dg.Failure(f"{items_path} is missing: materialise {benchmark_key(spec.name).to_user_string()} first")
    items: list[EvalItem] = limit_per_split(read_items(items_path), config.max_items_per_split, 0)
    context.log.info(f"{spec.name}: {len(items)} items on {runner.model_id}")
    rows = runner.run(items)
    summary = summarize(spec.name, rows, config.effective_threshold) | model_info | {"answer_mode": runner.cfg.answer_mode}
    out = lb.model_dir(store.path / "eval", spec.name, runner.model_id)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), out / "predictions.parquet")
    (out / "scores.json").write_text(json.dumps(summary, indent=1, default=str))
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


def eval_metadata(spec: BenchmarkSpec, rows: list[dict], summary: dict, samples: int) -> dict:
    likelihood = summary.get("answer_mode") == "likelihood"
    md: dict = {
        "accuracy": None if summary["accuracy"] is None else round(100 * summary["accuracy"], 2),
        "answer_mode": summary.get("answer_mode", "generate"),
        "items": summary["n"],
        "dagster/row_count": summary["n"],
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
                        **({"logprobs": _logprobs(r)} if likelihood else {}),
                    }
                    for r in rows[:samples]
                ],
                width=90,
            )
        ),
    }
    if "mme" in summary:
        mme = summary["mme"]
        md["mme_perception"] = round(mme["perception"], 2)
        md["mme_cognition"] = round(mme["cognition"], 2)
        md["mme_categories"] = dg.MetadataValue.md(
            markdown_table(
                [
                    {"category": c, "kind": v["kind"], "acc": round(100 * v["acc"], 1), "acc+": round(100 * v["acc_plus"], 1), "score": round(v["score"], 1)}
                    for c, v in mme["categories"].items()
                ]
            )
        )
    if "curve" in summary:
        eff = summary["effective_length"]
        md["effective_length_images"] = eff["n_images"]
        md["effective_length_tokens"] = eff["tokens"]
        md["last_passing_images"] = eff["last_passing_n"]
        md["accuracy_by_images"] = dg.MetadataValue.md(
            markdown_table(
                [
                    {"images": p["n_images"], "accuracy (%)": round(100 * p["accuracy"], 1), "items": p["n"], "mean prompt tokens": p["mean_tokens"]}
                    for p in summary["curve"]
                ]
            )
        )
        png = lb.haystack_plot({summary["model"]: summary["curve"]}, {}, eff["threshold"])
        md["haystack_curve"] = dg.MetadataValue.md(png_markdown(png, "Visual Haystack"))
    return md


def _method(recipe: str) -> str:
    r = RECIPES.get(recipe)
    return lb.method_label(r.method) if r else "?"


def _eval_asset(spec: BenchmarkSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=eval_key(spec.name),
        group_name=EVAL_GROUP,
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
        keys = context.partition_key.keys_by_dimension
        recipe, stage = keys["recipe"], keys["stage"]
        path = checkpoint_dir(store.path, recipe, stage)
        if not (path / "config.json").is_file():
            raise dg.Failure(f"no checkpoint at {path}: materialise checkpoint partition {context.partition_key} first")
        model = lb.model_id(recipe, stage)
        runner = Runner.from_checkpoint(path, model, config.run_config(hub.mode), log=context.log.info, device=config.device)
        info = {"model": model, "recipe": recipe, "stage": stage, "method": _method(recipe), "checkpoint": str(path)}
        rows, summary = evaluate(context, spec, runner, store, config, info)
        md = eval_metadata(spec, rows, summary, config.samples_in_metadata)
        md.update(checkpoint=dg.MetadataValue.path(str(path)), method=info["method"])
        context.log.info(f"{spec.name} on {model}: answer_mode={runner.cfg.answer_mode}")
        return dg.MaterializeResult(metadata=md)

    _asset.__name__ = f"eval_{spec.name}"
    return _asset


eval_assets = [_eval_asset(spec) for spec in BENCHMARKS]


@dg.asset(
    key=EVAL_BASE_KEY,
    group_name=LEADERBOARD_GROUP,
    deps=[BASE_MODEL_KEY, *[benchmark_key(s.name) for s in BENCHMARKS]],
    kinds={"pytorch", "parquet"},
    description="Every benchmark on model/base (loaded once): the reference row of the leaderboard and "
    "of the short-context regression check.",
)
def eval_base(context: dg.AssetExecutionContext, config: EvalConfig, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
    path = store.path / "model" / "base"
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
        if spec.name == "visual_haystack":
            md.update({k: v for k, v in eval_metadata(spec, rows, summary, 0).items() if k in ("haystack_curve", "accuracy_by_images", "effective_length_images", "effective_length_tokens")})
        if spec.name == "mme":
            md.update(mme_perception=round(summary["mme"]["perception"], 2), mme_cognition=round(summary["mme"]["cognition"], 2))
    md["scores"] = dg.MetadataValue.md(markdown_table(table))
    md["answer_mode"] = runner.cfg.answer_mode
    md["checkpoint"] = dg.MetadataValue.path(str(path))
    return dg.MaterializeResult(metadata=md)


# ----------------------------------------------------------------------------- lmms-eval


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
    keys = context.partition_key.keys_by_dimension
    recipe, stage = keys["recipe"], keys["stage"]
    path = checkpoint_dir(store.path, recipe, stage)
    out = store.stage_dir("eval", "lmms_eval") / recipe / stage
    extras = {
        "checkpoint": str(path),
        "output_dir": str(out),
        "tasks": list(config.tasks),
        "batch_size": config.batch_size,
        "limit": config.limit,
        "model_args": config.model_args,
        "model": lb.model_id(recipe, stage),
        "method": _method(recipe),
        "repo_root": str(Path(__file__).resolve().parents[2]),
    }
    client = dg.PipesSubprocessClient()
    return client.run(command=[sys.executable, "-m", "eval.lmms_pipes"], context=context, extras=extras).get_materialize_result()


# ----------------------------------------------------------------------------- leaderboard

LMMS_EVAL_ENABLED = lmms.lmms_eval_available()


def lmms_rows(eval_root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((eval_root / "lmms_eval").glob("**/leaderboard_row.json"))]


@dg.asset(
    key=LEADERBOARD_KEY,
    group_name=LEADERBOARD_GROUP,
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
    eval_root = store.path / "eval"
    results = lb.collect(eval_root, [s.name for s in BENCHMARKS])
    labels = {m: (lb.method_label(None) if m == lb.BASE else _method(m.split("/")[0])) for m in results}
    rows = [lb.row_for(m, s, labels[m]) for m, s in results.items()] + lmms_rows(eval_root)
    rows = lb.sort_rows(rows, STAGES)
    curves = {m: s["visual_haystack"]["curve"] for m, s in results.items() if "visual_haystack" in s}
    vh_png = lb.haystack_plot(curves, {m: f"{m} ({labels[m]})" for m in curves}, config.effective_threshold)
    vm_png = lb.videomme_plot(rows)
    out = store.stage_dir("leaderboard")
    (out / "visual_haystack.png").write_bytes(vh_png)
    (out / "videomme_by_duration.png").write_bytes(vm_png)
    table = lb.markdown(rows)
    if any(r.get("answer_mode") and "likelihood" in r["answer_mode"] for r in rows):
        table += "\n\n" + lb.LIKELIHOOD_NOTE
    (out / "leaderboard.md").write_text(table + "\n")
    (out / "leaderboard.json").write_text(json.dumps(rows, indent=1))
    base_of = {
        r["model"]: (lb.BASE if RECIPES.get(r["model"].split("/")[0]) and RECIPES[r["model"].split("/")[0]].base_model == "model/base" else None)
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
        metadata={
            "models": len(results),
            "leaderboard": dg.MetadataValue.md(table),
            "visual_haystack": dg.MetadataValue.md(png_markdown(vh_png, "Visual Haystack accuracy vs number of images")),
            "videomme_by_duration": dg.MetadataValue.md(png_markdown(vm_png, "Video-MME by duration")),
            "effective_length": dg.MetadataValue.md(
                markdown_table(
                    [{"model": r["model"], "method": r["method"], "images": r["vh_effective_images"], "tokens": r["vh_effective_tokens"]} for r in rows if r["source"] == "native"]
                )
            ),
            "path": dg.MetadataValue.path(str(out)),
        },
        check_results=[check],
    )


evaluation_assets = [*benchmark_assets, *eval_assets, eval_base, leaderboard, *([lmms_eval_run] if LMMS_EVAL_ENABLED else [])]
