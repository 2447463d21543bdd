"""The two halves of ``benchmarks/gpu_suite.sh`` that are Python: the environment report, and
the markdown written from the sections' JSON lines.

    python -m benchmarks.gpu_suite --environment
    python -m benchmarks.gpu_suite --report WORK --out benchmarks/gpu_suite.md --mode gpu --seconds S --command C
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

SECTIONS = ("environment", "rope_throughput", "training", "longest_trainable")


def _version(package: str) -> str:
    if importlib.util.find_spec(package.replace("-", "_")) is None:
        return "absent"
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "present (version unknown)"


def environment() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "transformers": _version("transformers"),
        "flash_attn": _version("flash-attn"),
        "deepspeed": _version("deepspeed"),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), gpu_count=torch.cuda.device_count(),
                   bf16=torch.cuda.is_bf16_supported())
    return out


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "_(no result)_"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("–" if r.get(c) is None else str(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _status(work: Path, name: str) -> str:
    path = work / f"{name}.status"
    if not path.is_file():
        return "not run"
    st = json.loads(path.read_text())
    if st["rc"] == 0:
        return f"ok, {st['seconds']} s"
    why = "timed out" if st["rc"] == 124 else f"exit {st['rc']}"
    err = (work / f"{name}.err").read_text(errors="replace").strip().splitlines() if (work / f"{name}.err").is_file() else []
    return f"**{why}** after {st['seconds']} s (limit {st['limit']} s)" + (f": `{err[-1][:200]}`" if err else "")


def report(work: Path, mode: str, seconds: int, command: str) -> str:
    env = (_lines(work / "environment.jsonl") or [{}])[0]
    rope = _lines(work / "rope_throughput.jsonl")
    train = _lines(work / "training.jsonl")
    bisect = _lines(work / "longest_trainable.jsonl")
    summary = next((r for r in bisect if "longest_trainable" in r), {})
    tries = [r for r in bisect if "seq" in r]
    for row in tries:
        row.setdefault("ok", "error" not in row)
    gpu = env.get("gpu") or "no GPU"
    head = [
        "# GPU suite",
        "",
        f"Command: `{command}` (from the repo root). Mode: **{mode}**. Total: {seconds} s. "
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Machine: {gpu}" + (f" ({env.get('gpu_memory_gib')} GiB) x {env.get('gpu_count')}" if env.get("gpu") else "")
        + f", {env.get('cpu_count')} CPU threads, host `{env.get('host')}`.",
        "",
    ]
    if mode != "gpu":
        head += ["> **Not a GPU run**: the CPU smoke mode (tiny shape, short sequences) that keeps the script from",
                 "> rotting. Its numbers say nothing about a GPU. Run `bash benchmarks/gpu_suite.sh` on the GPU host.", ""]
    sections = [
        "## 1. Environment (" + _status(work, "environment") + ")",
        "",
        _table([env], ["python", "torch", "cuda", "cuda_available", "gpu", "transformers", "flash_attn", "deepspeed"]),
        "",
        "## 2. Position-method throughput, forward + backward (" + _status(work, "rope_throughput") + ")",
        "",
        "Ratio to the stock rotary module (`none`); the frequency methods only swap a buffer, V2PE replaces "
        "the rope index. Best of interleaved rounds.",
        "",
        _table(rope, ["method", "tokens_per_s", "ratio"]),
        "",
        "## 3. Training step: tokens/s and MFU (" + _status(work, "training") + ")",
        "",
        "One packed sequence per step, vision frozen, activation checkpointing, AdamW (benchmarks/training.py; "
        "MFU counts model FLOPs against the `--peak-tflops` default of 989, H100/H200 dense bf16).",
        "",
        _table(train, ["shape", "seq", "images", "step_s", "tokens_per_s", "tflops_per_s", "mfu", "peak_memory_gib", "attn"]),
        "",
        f"## 4. Longest trainable length by bisection, mode `{summary.get('mode', '?')}` with activation checkpointing ("
        + _status(work, "longest_trainable") + ")",
        "",
        _table(tries, ["seq", "ok", "step_s", "tokens_per_s", "peak_memory_gib", "error"]) if tries else "_(no try)_",
        "",
        f"Longest trainable: **{summary.get('longest_trainable')}** tokens; first failing: {summary.get('first_failing')}"
        + (f" (exact to {summary['exact_to']} tokens)" if summary.get("exact_to") else " (bracket: the time budget ended the search)" if summary else ""),
        "",
    ]
    return "\n".join(head + sections)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--environment", action="store_true")
    p.add_argument("--report", type=Path)
    p.add_argument("--out", type=Path, default=Path("benchmarks/gpu_suite.md"))
    p.add_argument("--mode", default="gpu")
    p.add_argument("--seconds", type=int, default=0)
    p.add_argument("--command", default="bash benchmarks/gpu_suite.sh")
    args = p.parse_args(argv)
    if args.environment:
        print(json.dumps(environment()))
        return 0
    if args.report is None:
        p.error("give --environment or --report WORK")
    text = report(args.report, args.mode, args.seconds, args.command)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(args.out)
    print(f"gpu_suite: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
