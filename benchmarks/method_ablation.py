"""Position-method ablation at tiny scale, like the paper's comparison (GIRAFFE 3.2, Table 1, Fig. 4).

Every method extends the *same* taught base model (``eval.base_model``, original context L_V =
256 tokens) with the *same* extension data and the *same* number of steps, then is evaluated on
the embedded Visual Haystack (accuracy by number of images N, effective length) and on the short
benchmarks (MME, MMBench: the short-context regression), with several seeds:

* methods: ``none`` (direct extrapolation), ``base`` (rope base x10), ``pi``, ``ntk``, ``yarn``,
  ``mrope++`` (all from L_V = 256 to L' = 1024, the paper's 4x), ``v2pe`` (delta drawn in
  training, 1/4 at inference); plus the base model without any extension for reference;
* extension data: Visual Haystack needle items with 10-50 images (prompts of 120-360 tokens,
  past L_V) and planted-fact retrieval over longer documents, from the generators at a seed used
  neither by the base's training items nor by the evaluation; vision tower frozen (as the paper);
* seeds: the extension's sampling order and initialisation of nothing else (the base is shared).

    python -m benchmarks.method_ablation --seeds 0,1,2 --steps 100 --out benchmarks/method_ablation.md

Writes the markdown (tables, machine, command, minutes) and a JSON of every run beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

METHODS: dict[str, dict[str, Any] | None] = {
    "none": {"rope": {"method": "none"}},
    "base": {"rope": {"method": "base", "new_base": 1e7}},
    "pi": {"rope": {"method": "pi", "target_length": 1024}},
    "ntk": {"rope": {"method": "ntk", "target_length": 1024}},
    "yarn": {"rope": {"method": "yarn", "target_length": 1024}},
    "mrope++": {"rope": {"method": "mrope++", "target_length": 1024}},
    "v2pe": {"rope": {"method": "none"}, "v2pe": {"inference_delta": 0.25}},
}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds (0 for one seed)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, 0.0
    return m, T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def extension_items(root: Path, seed: int, haystack_items: int, retrieval_items: int):
    from eval.synthetic import SyntheticConfig, benchmark_items, retrieval_items as make_retrieval

    cfg = SyntheticConfig(seeds=0, video_seeds=0, haystack_sizes=(10, 20, 50), haystack_items_per_size=haystack_items,
                          retrieval_items=retrieval_items, retrieval_words=(150, 450), seed=seed)
    items = [i for i in benchmark_items(root, cfg) if i.benchmark == "visual_haystack"]
    return items + make_retrieval(cfg)


def eval_items(root: Path, items_per_size: int, sizes: tuple[int, ...] | None = None, short_per_split: int | None = None):
    """The embedded evaluation items (seed 0, as the demo's): Visual Haystack with
    ``items_per_size`` per N (``sizes``: default all of the benchmark's), MME and MMBench with at
    most ``short_per_split`` items per split (None: all)."""
    from assets.sources.hub import HubSettings
    from eval.benchmarks import get_benchmark
    from eval.fetch import fetch_benchmark
    from eval.formats import FetchOptions, limit_per_split

    out = {}
    for name in ("visual_haystack", "mme", "mmbench"):
        if name == "visual_haystack":
            options = FetchOptions(items_per_size=items_per_size, **({"haystack_sizes": sizes} if sizes else {}))
        else:
            options = FetchOptions()
        items = fetch_benchmark(get_benchmark(name), HubSettings(), root / "bench" / name, root / "embedded", options).items
        out[name] = items if name == "visual_haystack" else limit_per_split(items, short_per_split, 0)
    return out


def run_method(base_dir: Path, method: dict | None, seed: int, train_items, evals, args, run_config) -> dict[str, Any]:
    from eval.benchmarks import get_benchmark
    from eval.runner import Runner
    from training.base_training import BaseTrainingConfig, train_base
    from training.modeling import freeze_vision
    from training.positions.apply import apply_position_method, load_with_position_method
    from training.processor import load_processor

    torch.manual_seed(seed)
    model = load_with_position_method(base_dir)
    processor = load_processor(base_dir)
    if method is not None:
        apply_position_method(model, copy.deepcopy(method))
    runner = Runner(model, processor, "ablation", run_config)
    started = time.perf_counter()
    if method is not None and args.steps > 0:
        freeze_vision(model)
        prepared = [runner.prepare(i) for i in train_items]
        rng = random.Random(seed)
        cfg = BaseTrainingConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=10, seed=seed,
                                 log_every=max(1, args.steps // 4))
        train_base(model, lambda step: runner.training_batch(rng.sample(prepared, cfg.batch_size)), cfg, log=print)
    trained_s = time.perf_counter() - started
    out: dict[str, Any] = {"train_seconds": round(trained_s, 1)}
    for name, items in evals.items():
        rows = runner.run(items)
        out[name] = get_benchmark(name).summarize(rows, args.threshold)
    out["eval_seconds"] = round(time.perf_counter() - started - trained_s, 1)
    return out


def render(results: dict[str, list[dict]], args, minutes: float, base_record: dict) -> str:
    from assets.defs.evaluation import EvalConfig
    from eval.benchmarks.mme import MME_CATEGORY_MAX

    ns = [p["n_images"] for p in next(iter(results.values()))[0]["visual_haystack"]["curve"]]
    tokens = {p["n_images"]: p["mean_tokens"] for p in next(iter(results.values()))[0]["visual_haystack"]["curve"]}
    lines = [
        "# Position-method ablation (tiny scale, embedded data)",
        "",
        f"Command: `python -m benchmarks.method_ablation --seeds {args.seeds} --steps {args.steps} --batch-size {args.batch_size} "
        f"--lr {args.lr:g} --vh-items {args.vh_items}" + (f" --vh-sizes {args.vh_sizes}" if args.vh_sizes else "")
        + (f" --short-items {args.short_items}" if args.short_items else "") + (f" --base {args.base}" if args.base else "")
        + f"` ({minutes:.0f} min). Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, {platform.system()} {platform.release()}, torch {torch.__version__}, no GPU; "
        f"load average at the end {os.getloadavg()[0]:.1f} (the cores were shared with other jobs).",
        "",
        f"Base: the embedded tiny Qwen2-VL ({base_record.get('parameters', 0) / 1e6:.2f}M parameters) taught the benchmarks' "
        f"task types at L_V = {base_record.get('original_length')} tokens ({base_record.get('steps')} steps). Each method: "
        f"the same {args.steps} steps x {args.batch_size} items of extension data (Visual Haystack with 10-50 images, "
        "retrieval over longer documents), vision frozen, from the same base; seeds vary the sampling order. "
        f"Evaluation: embedded Visual Haystack, {args.vh_items} items per N (yes/no, chance 50%), MME "
        f"({args.n_items.get('mme')} items) and MMBench ({args.n_items.get('mmbench')} items), "
        f"{EvalConfig().resolved_answer_mode('embedded')} answer mode. "
        "Mean over seeds with the 95% t-interval (+-).",
        "",
        "## Visual Haystack accuracy (%) by number of images N",
        "",
        "| method | " + " | ".join(f"N={n} (~{tokens[n]:.0f} tok)" for n in ns) + " | effective length (images) |",
        "|" + "---|" * (len(ns) + 2),
    ]
    summary_rows = []
    for method, runs in results.items():
        cells = []
        for j, n in enumerate(ns):
            m, h = mean_ci([100 * r["visual_haystack"]["curve"][j]["accuracy"] for r in runs])
            cells.append(f"{m:.0f} +-{h:.0f}")
        effs = [r["visual_haystack"]["effective_length"]["n_images"] or 0 for r in runs]
        eff_text = ", ".join(str(e) if e else "<1" for e in effs)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {eff_text} (per seed) |")
        mme = [100 * (r["mme"]["mme"]["perception"] + r["mme"]["mme"]["cognition"])
               / (MME_CATEGORY_MAX * sum(c["kind"] != "other" for c in r["mme"]["mme"]["categories"].values())) for r in runs]
        mmb = [100 * r["mmbench"]["accuracy"] for r in runs]
        vh_all = [100 * r["visual_haystack"]["accuracy"] for r in runs]
        beyond = [statistics.fmean(100 * p["accuracy"] for p in r["visual_haystack"]["curve"] if (p["mean_tokens"] or 0) > 256) for r in runs]
        summary_rows.append((method, mean_ci(vh_all), mean_ci(beyond), effs, mean_ci(mme), mean_ci(mmb)))
    lines += [
        "",
        "## Summary",
        "",
        "| method | VH accuracy, all N (%) | VH accuracy beyond L_V (%) | effective length, mean of seeds (images) | MME (% of max) | MMBench (%) |",
        "|---|---|---|---|---|---|",
    ]
    for method, vh, beyond, effs, mme, mmb in summary_rows:
        lines.append(f"| {method} | {vh[0]:.1f} +-{vh[1]:.1f} | {beyond[0]:.1f} +-{beyond[1]:.1f} | {statistics.fmean(effs):.1f} | "
                     f"{mme[0]:.1f} +-{mme[1]:.1f} | {mmb[0]:.1f} +-{mmb[1]:.1f} |")
    lines += ["", "Chance: Visual Haystack 50%, MME 37.5% of max, MMBench ~29% (3-4 options).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from assets.defs.evaluation import EvalConfig
    from assets.sources.embedded.text import corpus
    from eval.base_model import BaseModelSpec, build_base_model
    from eval.scoring import EFFECTIVE_THRESHOLD

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("data/ablation"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/method_ablation.md"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vh-items", type=int, default=8)
    p.add_argument("--vh-sizes", default=None, help="comma-separated numbers of images (default: the benchmark's 1-150)")
    p.add_argument("--short-items", type=int, default=None, help="at most this many MME / MMBench items per split (default all)")
    p.add_argument("--threshold", type=float, default=EFFECTIVE_THRESHOLD)
    p.add_argument("--base", type=Path, default=None,
                   help="an embedded base model folder already taught (e.g. a demo's <data root>/model/base); "
                   "default: build it under --work (cached by content hash)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    started = time.perf_counter()
    if args.base:
        from eval.base_model import BaseModelResult
        from training.tiny_model import base_record

        base = BaseModelResult(args.base, True, base_record(json.loads((args.base / "config.json").read_text())) or {})
    else:
        base = build_base_model(args.work / "base", args.work / "base_training", lambda: corpus(n_documents=400),
                                BaseModelSpec(), EvalConfig().run_config("embedded"), log=print)
    run_config = EvalConfig().run_config("embedded")
    train_items = extension_items(args.work / "extension", 3000, haystack_items=60, retrieval_items=120)
    sizes = tuple(int(n) for n in args.vh_sizes.split(",")) if args.vh_sizes else None
    evals = eval_items(args.work, args.vh_items, sizes, args.short_items)
    args.n_items = {name: len(items) for name, items in evals.items()}
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {"base (no extension)": [run_method(base.path, None, 0, [], evals, args, run_config)]}
    for name in args.methods.split(","):
        results[name] = []
        for seed in seeds:
            print(f"ablation: {name} seed {seed}", flush=True)
            results[name].append(run_method(base.path, METHODS[name], seed, train_items, evals, args, run_config))
            (args.out.with_suffix(".json")).write_text(json.dumps(results, default=str))
    minutes = (time.perf_counter() - started) / 60
    args.out.write_text(render(results, args, minutes, base.record))
    print(f"ablation: wrote {args.out} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
