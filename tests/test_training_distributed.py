"""Multi-process paths on CPU: DeepSpeed ZeRO-2 through its own launcher (with resume), and
Ulysses sequence parallelism (DeepSpeed's attention wrapper, gloo) against the full-sequence
loss and gradients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig
from training.data import load_batch_file, save_batch_file
from training.ds import shipped_config
from training.launch import LaunchConfig, build_command
from training.trainer import REPORT_FILE

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_deepspeed_zero2_on_cpu_trains_and_resumes(tiny_model_dir, train_batch_file, tmp_path):
    out = tmp_path / "ds"
    cfg = TrainConfig(model_path=str(tiny_model_dir), output_dir=str(out), batch_source=f"file:{train_batch_file}",
                      stage="8k", steps=2, save_every=1, learning_rate=3e-3)
    run_json = cfg.write_json(tmp_path / "run.json")
    cmd = build_command(LaunchConfig("deepspeed", 1), str(run_json), shipped_config("zero2"))
    proc = _run(cmd)
    assert "step 2/2 loss" in proc.stdout
    first = json.loads((out / "final" / REPORT_FILE).read_text())
    assert (out / "state" / "step_1" / "trainer_state.json").is_file()  # DeepSpeed's own checkpoint + ours

    shutil.rmtree(out / "final")
    shutil.rmtree(out / "state" / "step_2")
    _run(build_command(LaunchConfig("deepspeed", 1), str(run_json), shipped_config("zero2")))
    second = json.loads((out / "final" / REPORT_FILE).read_text())
    assert second["start_step"] == 1 and [s for s, _ in second["losses"]] == [1, 2]
    assert second["weights_fingerprint"] == first["weights_fingerprint"]  # engine.load_checkpoint restored all


def test_ulysses_sequence_parallel_matches_the_full_sequence(tiny_model_dir, train_batch_file, image_batch, tmp_path):
    batches = load_batch_file(str(train_batch_file)) + [image_batch]
    batches.append({k: v[:, :-1] for k, v in batches[0].items()})  # an odd length: padded to 2 shards
    save_batch_file(batches, tmp_path / "b.pt")
    out = tmp_path / "sp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ulysses_worker.py"), str(tiny_model_dir), str(tmp_path / "b.pt"), str(out)]
    _run(cmd)
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and rows[3]["tokens"] % 2 == 1
    for r in rows:
        assert r["ulysses"] == pytest.approx(r["reference"], rel=1e-5)
        assert r["max_grad_error"] <= 1e-5 * max(1.0, r["max_grad"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deepspeed_zero3_offload_on_gpu(tiny_model_dir, train_batch_file, tmp_path):
    """The GPU path: DeepSpeed ZeRO-3 with CPU offload, bf16, gathered 16-bit export."""
    out = tmp_path / "z3"
    cfg = TrainConfig(model_path=str(tiny_model_dir), output_dir=str(out), batch_source=f"file:{train_batch_file}",
                      stage="8k", steps=3, save_every=2, learning_rate=3e-3)
    run_json = cfg.write_json(tmp_path / "run.json")
    _run(build_command(LaunchConfig("deepspeed", 1), str(run_json), shipped_config("zero3_offload")))
    report = json.loads((out / "final" / REPORT_FILE).read_text())
    assert report["dtype"] == "bfloat16" and report["peak_memory_kind"].startswith("cuda")
    from training.modeling import weights_fingerprint
    from training.positions.apply import load_with_position_method

    assert weights_fingerprint(load_with_position_method(out / "final")) == report["weights_fingerprint"]
