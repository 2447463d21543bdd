"""benchmarks/gpu_suite.sh in its CPU smoke mode: every section runs and lands in the markdown,
so the script the first lent GPU will run has not rotted (its GPU numbers are not a test)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_suite_smoke_writes_every_section(tmp_path):
    out = tmp_path / "gpu_suite.md"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_suite.sh", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "Mode: **smoke**" in text and "Not a GPU run" in text
    for section in ("## 1. Environment (ok", "## 2. Position-method throughput, forward + backward (ok",
                    "## 3. Training step: tokens/s and MFU (ok", "## 4. Longest trainable length by bisection"):
        assert section in text, section
    for method in ("| stock |", "| pi |", "| ntk |", "| yarn |", "| mrope++ |", "| v2pe |"):
        assert method in text, method
    assert "| tiny | 256 |" in text and "| tiny | 512 |" in text  # both training lengths
    assert "Longest trainable: **1024** tokens" in text  # the tiny shape trains the whole bracket
