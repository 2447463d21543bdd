"""lmms-eval bridge (optional ``eval`` extra): the command line, and its results as leaderboard rows.

lmms-eval runs its own standard tasks (``videomme``, ``longvideobench_val_v``, ``mme``,
``mmbench_en_dev``) with our model registered as ``giraffe_qwen2_vl``
(``eval/lmms_plugin``: lmms-eval's Qwen2-VL wrapper plus ``load_with_position_method``'s
re-application of the checkpoint's position method, registered through lmms-eval's
``LMMS_EVAL_PLUGINS`` hook). Its frames/resolution protocol is lmms-eval's, not the paper's
2 fps + hybrid path: the native runner (``eval.runner``) stays the default and these rows are
labelled ``source = lmms-eval`` on the leaderboard.

Results format (lmms-eval ``EvaluationTracker``: ``<output>/<model>/<date>_results.json``;
older releases ``<output>/results.json``): ``{"results": {task: {"alias": ..., "<metric>,<filter>":
value, "<metric>_stderr,<filter>": ...}}, "config": {"model", "model_args", ...}, "configs",
"versions", "n-samples": {task: {"original", "effective"}}, "date", ...}``. Metrics read here:
``videomme_perception_score`` (0-100), ``lvb_acc`` (0-1), ``mme_percetion_score`` (sic, the
task's spelling) and ``mme_cognition_score`` (MME sums), ``gpt_eval_score`` (0-100; MMBench
dev needs lmms-eval's GPT judge, absent without an API key).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.benchmarks import BENCHMARKS
from eval.leaderboard import BENCHMARK_COLUMNS, COLUMNS

MODEL_NAME = "giraffe_qwen2_vl"
PLUGIN = "eval.lmms_plugin"
DEFAULT_TASKS = tuple(t for b in BENCHMARKS for t in b.lmms_tasks)  # videomme, longvideobench_val_v, mme, mmbench_en_dev


def lmms_eval_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lmms_eval") is not None


def command(
    checkpoint: str | Path,
    output_dir: str | Path,
    tasks: Sequence[str] = DEFAULT_TASKS,
    batch_size: int = 1,
    limit: int | None = None,
    model_args: str = "",
    python: str = sys.executable,
) -> list[str]:
    args = f"pretrained={checkpoint}" + (f",{model_args}" if model_args else "")
    cmd = [python, "-m", "lmms_eval", "--model", MODEL_NAME, "--model_args", args, "--tasks", ",".join(tasks)]
    cmd += ["--batch_size", str(batch_size), "--output_path", str(output_dir), "--log_samples"]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def environment(repo_root: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The subprocess environment: our plugin package importable and registered."""
    env = dict(os.environ if base is None else base)
    plugins = [p for p in env.get("LMMS_EVAL_PLUGINS", "").split(",") if p]
    env["LMMS_EVAL_PLUGINS"] = ",".join(plugins if PLUGIN in plugins else [*plugins, PLUGIN])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH", "")) if p)
    return env


def find_results(output_dir: str | Path) -> Path:
    """The newest results file lmms-eval wrote under ``output_dir``."""
    root = Path(output_dir)
    found = [p for p in root.rglob("*results.json") if p.is_file()]
    if not found:
        raise FileNotFoundError(f"no lmms-eval results file (*_results.json) under {root}")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))




def parse_results(results: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Our metrics from an lmms-eval results file (path or loaded dict)."""
    data = json.loads(Path(results).read_text()) if not isinstance(results, Mapping) else results
    tasks = data.get("results") or {}
    out: dict[str, Any] = {
        "model_args": (data.get("config") or {}).get("model_args"),
        "lmms_eval_version": data.get("lmms_eval_version"),
        "date": data.get("date"),
        "n_samples": {t: (v or {}).get("effective") for t, v in (data.get("n-samples") or {}).items()},
        "tasks": sorted(tasks),
    }
    for bench in BENCHMARKS:
        out.update(bench.lmms_cells(tasks))
    return out


def leaderboard_row(model: str, method: str, parsed: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=model, method=method, source="lmms-eval", answer_mode="generate")  # lmms-eval's tasks generate
    for key in BENCHMARK_COLUMNS:
        value = parsed.get(key)
        row[key] = None if value is None else round(float(value), 1)
    return row
