"""Shared fixtures: the embedded sample fetched once per session, and the tiny model."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from assets.chatml.normalize import normalize_source
from assets.contract.media import MediaResolver
from assets.sources.hub import HubSettings, fetch_source
from assets.sources.registry import SOURCES


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("giraffe-data")


@pytest.fixture(scope="session")
def fetched(data_root):
    """Every source fetched from its embedded sample through the real loader."""
    return {
        spec.name: fetch_source(spec, HubSettings(), data_root / "raw" / spec.name, data_root / "embedded")
        for spec in SOURCES
    }


@pytest.fixture(scope="session")
def normalized(fetched, data_root):
    """Every source normalised to ChatML: name -> NormalizeResult."""
    out = {}
    for spec in SOURCES:
        f = fetched[spec.name]
        rows = pq.read_table(f.data_path).to_pylist()
        media = MediaResolver(list(f.media_roots), data_root / "chatml" / spec.name / "media")
        out[spec.name] = normalize_source(spec, rows, media)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from assets.sources.embedded.text import corpus
    from training.tiny_model import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-model"), corpus(n_documents=200))


@pytest.fixture(scope="session")
def processor(tiny_model_dir):
    from training.processor import load_processor

    return load_processor(tiny_model_dir)


# --- ops fixtures ---
@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`giraffe demo` once per session into a fresh instance: (exit code, instance, data root).

    Run as a user runs it: the CLI in its own process, its console (stdout and stderr, in
    order) kept in ``<instance>/demo_console.txt`` for the test that reads it (``demo_console``).
    Shared by test_pipeline.py (what the demo materialised) and test_ui.py (the same instance
    served by the real webserver). ``GIRAFFE_TEST_DEMO=<dagster home>:<data root>`` reuses a
    finished demo instead (iterating on these tests on a slow host; ``demo_exit_code`` and
    ``demo_console.txt`` in the home folder, when present, stand for its exit code and console)."""
    import os
    import subprocess
    import sys

    import dagster as dg

    reuse = os.environ.get("GIRAFFE_TEST_DEMO")
    if reuse:  # "<dagster home>:<data root>" of a finished `giraffe demo` (its console in <home>/demo_console.txt)
        home, data = (Path(p).resolve() for p in reuse.split(":", 1))
        code = int((home / "demo_exit_code").read_text()) if (home / "demo_exit_code").is_file() else 0
        return code, dg.DagsterInstance.from_config(str(home)), data
    home = tmp_path_factory.mktemp("dagster-home")
    data = tmp_path_factory.mktemp("demo-data")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "GIRAFFE_DATA_ROOT", "GIRAFFE_VERBOSE")}
    with open(home / "demo_console.txt", "wb") as console:
        code = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "demo", "--data-root", str(data), "--dagster-home", str(home)],
            cwd=root, env=env, stdout=console, stderr=subprocess.STDOUT, timeout=3600,
        ).returncode
    instance = dg.DagsterInstance.from_config(str(home))
    return code, instance, data


@pytest.fixture(scope="session")
def demo_console(demo_run) -> str:
    """What `giraffe demo` printed (stdout and stderr together)."""
    _, instance, _ = demo_run
    return (Path(instance.root_directory) / "demo_console.txt").read_text(errors="replace")


# --- train fixtures ---
TRAIN_DIALOGUES = [
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What colour is the sky on a clear day?"},
        {"role": "assistant", "content": "The sky is blue on a clear day, because air scatters blue light the most."},
    ],
    [
        {"role": "user", "content": "Name the planet closest to the sun."},
        {"role": "assistant", "content": "Mercury is the closest planet to the sun."},
        {"role": "user", "content": "And the largest one?"},
        {"role": "assistant", "content": "Jupiter is the largest planet of the solar system."},
    ],
]


@pytest.fixture(scope="session")
def train_dialogues() -> list:
    """Text-only ChatML dialogues (``{"role", "content": str}``) used by the training tests."""
    return TRAIN_DIALOGUES


@pytest.fixture(scope="session")
def train_batch_file(tiny_model_dir, tmp_path_factory) -> Path:
    """Text-only ChatML micro-batches (labels on assistant turns) saved for ``batch_source='file:...'``."""
    from transformers import AutoTokenizer

    from training.data import save_batch_file, text_batch

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = tmp_path_factory.mktemp("train-batches") / "batches.pt"
    save_batch_file([text_batch(tokenizer, d) for d in TRAIN_DIALOGUES], path)
    return path


def _write_mixture(path: Path, stage: str = "8k", capacity: int = 8192, lengths=(40, 45), mode: str = "concat") -> Path:
    """A mixture shard with the columns of docs/packed_shards.md (one sequence: samples s0, s1
    of source ``text``)."""
    import pyarrow as pa

    lengths = [int(n) for n in lengths]
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "seq_id": [f"{stage}-long_text-0"],
            "stage": [stage],
            "capacity": pa.array([capacity], pa.int64()),
            "mode": [mode],
            "category": ["long_text"],
            "long": [False],
            "sample_ids": [["s0", "s1"]],
            "sources": [["text", "text"]],
            "offsets": pa.array([[0, lengths[0]]], pa.list_(pa.int64())),
            "lengths": pa.array([lengths], pa.list_(pa.int64())),
            "n_tokens": pa.array([sum(lengths)], pa.int64()),
            "copy": pa.array([0], pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="session")
def write_mixture():
    """``write_mixture(path, stage, capacity, lengths, mode)``: a one-row mixture shard per docs/packed_shards.md."""
    return _write_mixture


@pytest.fixture(scope="session")
def image_batch(processor) -> dict:
    """One ChatML sequence with an image (processor output) and labels on the answer only."""
    from PIL import Image

    image = Image.new("RGB", (56, 84), (200, 30, 30))
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "It is red."}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    batch = dict(processor(text=[text], images=[image], return_tensors="pt"))
    ids = batch["input_ids"][0].tolist()
    tok = processor.tokenizer
    start = max(i for i, t in enumerate(ids) if t == tok.convert_tokens_to_ids("<|im_start|>"))
    answer = start + 1 + len(tok("assistant\n", add_special_tokens=False)["input_ids"])
    labels = batch["input_ids"].clone()
    labels[0, :answer] = -100
    batch["labels"] = labels
    return batch
