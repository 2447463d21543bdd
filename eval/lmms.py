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
from eval.items import EvalItem
from eval.leaderboard import BENCHMARK_COLUMNS, COLUMNS

MODEL_NAME = "giraffe_qwen2_vl"
PLUGIN = "eval.lmms_plugin"
DEFAULT_TASKS = tuple(t for b in BENCHMARKS for t in b.lmms_tasks)  # videomme, longvideobench_val_v, mme, mmbench_en_dev
LOCAL_SUFFIX = "_local"
"""A task run on the local copy of its benchmark is named ``<task>_local`` (its own name stays
lmms-eval's task on the hub dataset); results are read back under the task's own name."""


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
    include_path: str | Path | None = None,
) -> list[str]:
    args = f"pretrained={checkpoint}" + (f",{model_args}" if model_args else "")
    cmd = [python, "-m", "lmms_eval", "--model", MODEL_NAME, "--model_args", args, "--tasks", ",".join(tasks)]
    cmd += ["--batch_size", str(batch_size), "--output_path", str(output_dir), "--log_samples"]
    if include_path:
        cmd += ["--include_path", str(include_path)]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def environment(repo_root: str | Path, base: Mapping[str, str] | None = None, cache_dir: str | Path | None = None) -> dict[str, str]:
    """The subprocess environment: our plugin package importable and registered; with
    ``cache_dir``, the Hugging Face caches lmms-eval writes go there (inside the data root)."""
    env = dict(os.environ if base is None else base)
    plugins = [p for p in env.get("LMMS_EVAL_PLUGINS", "").split(",") if p]
    env["LMMS_EVAL_PLUGINS"] = ",".join(plugins if PLUGIN in plugins else [*plugins, PLUGIN])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH", "")) if p)
    if cache_dir:
        env["HF_HOME"] = str(Path(cache_dir) / "hf")
        env["HF_DATASETS_CACHE"] = str(Path(cache_dir) / "hf" / "datasets")
    env.setdefault("OPENAI_API_URL", "http://127.0.0.1:9/v1/chat/completions")  # no judge is reachable: fail fast
    return env


def device_args(model_args: str) -> str:
    """``model_args`` plus ``device=cpu,device_map=cpu`` when no CUDA device is there (the
    wrapper's default is cuda) and none was given."""
    import torch

    if "device" in model_args or torch.cuda.is_available():
        return model_args
    return ",".join(p for p in (model_args, "device=cpu,device_map=cpu") if p)


def lmms_tasks_root() -> Path:
    import lmms_eval

    return Path(lmms_eval.__file__).resolve().parent / "tasks"


def write_local_tasks(out_dir: str | Path, sources: Mapping[str, tuple[str | Path, Sequence[EvalItem]]]) -> list[str]:
    """lmms-eval task files for the benchmarks that have a local form (``Benchmark.lmms_local``):
    ``sources`` maps a benchmark name to (its sample folder, its items). For each, the rows of
    the published table that became items (``extra.source_row``) are written as a parquet view
    (schema and Hugging Face features kept, so images decode as on the hub), and a YAML that
    ``include``s lmms-eval's own task file (its prompts, ``process_results``, aggregation)
    and only points the dataset at that view. Returns the task names (``--include_path out_dir``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = lmms_tasks_root()
    names = []
    for bench in BENCHMARKS:
        if bench.name not in sources or not bench.lmms_local:
            continue
        location, items = sources[bench.name]
        rows = sorted({int(i.extra["source_row"]) for i in items if "source_row" in i.extra})
        if not rows:
            continue
        for local in bench.lmms_local:
            files = sorted(Path(location).glob(local.data_files))
            if not files:
                raise FileNotFoundError(f"{bench.name}: no {local.data_files} under {location}")
            tables = [pq.read_table(f) for f in files]
            table = pa.concat_tables(tables).replace_schema_metadata(tables[0].schema.metadata).take(rows)
            view = out / f"{local.task}{LOCAL_SUFFIX}.parquet"
            pq.write_table(table, view)
            name = f"{local.task}{LOCAL_SUFFIX}"
            (out / f"{name}.yaml").write_text(
                "\n".join(
                    [
                        f"# lmms-eval's {local.task} on the {len(rows)} items of the local {bench.name} sample",
                        f"include: {root / local.yaml}",
                        f"task: {name}",
                        "dataset_path: parquet",
                        "dataset_name: null",
                        "dataset_kwargs:",
                        "  data_files:",
                        f"    {local.split}: {view}",
                        f"test_split: {local.split}",
                        "",
                    ]
                )
            )
            names.append(name)
    return names


def find_results(output_dir: str | Path) -> Path:
    """The newest results file lmms-eval wrote under ``output_dir``."""
    root = Path(output_dir)
    found = [p for p in root.rglob("*results.json") if p.is_file()]
    if not found:
        raise FileNotFoundError(f"no lmms-eval results file (*_results.json) under {root}")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))




def read_samples(output_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The per-document records lmms-eval logged (``--log_samples``: ``*_samples_<task>.jsonl``)
    by task, in ``doc_id`` order: the document, lmms-eval's response and its per-item scores."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(output_dir).rglob("*_samples_*.jsonl")):
        task = task_name(path.stem.split("_samples_", 1)[1])
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[task] = sorted(rows, key=lambda r: int(r["doc_id"]))
    return out


def response(sample: Mapping[str, Any]) -> str:
    """lmms-eval's answer text for one logged document (after its filters)."""
    value = sample.get("filtered_resps", sample.get("resps"))
    while isinstance(value, list) and value:
        value = value[0]
    return "" if value is None or isinstance(value, list) else str(value)


def task_name(task: str) -> str:
    """lmms-eval's name of a task (``mme_local`` -> ``mme``)."""
    return task[: -len(LOCAL_SUFFIX)] if task.endswith(LOCAL_SUFFIX) else task


def parse_results(results: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Our metrics from an lmms-eval results file (path or loaded dict)."""
    data = json.loads(Path(results).read_text()) if not isinstance(results, Mapping) else results
    tasks = {task_name(t): v for t, v in (data.get("results") or {}).items()}
    out: dict[str, Any] = {
        "model_args": (data.get("config") or {}).get("model_args"),
        "lmms_eval_version": data.get("lmms_eval_version"),
        "date": data.get("date"),
        "n_samples": {task_name(t): (v or {}).get("effective") for t, v in (data.get("n-samples") or {}).items()},
        "tasks": sorted(tasks),
    }
    for bench in BENCHMARKS:
        out.update(bench.lmms_cells(tasks))
    return out


def leaderboard_row(model: str, method: str, parsed: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=model, method=method, source="lmms-eval", answer_mode="generate", stats={})  # lmms-eval's tasks generate
    for key in BENCHMARK_COLUMNS:
        value = parsed.get(key)
        row[key] = None if value is None else round(float(value), 1)
    return row
