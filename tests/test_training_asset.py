"""The checkpoint asset through Dagster Pipes on CPU: 8k -> 32k for one recipe with real steps
(32k under torchrun with 2 gloo ranks), a run killed mid-stage that resumes, and bad
configurations that fail before anything is launched."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.defs.checkpoint import checkpoint
from assets.defs.partitions import checkpoint_partitions
from assets.defs.resources import DataStore
from training.modeling import weights_fingerprint
from training.positions.apply import load_with_position_method, read_position_method


def _collator_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("training.collator") is not None


@pytest.fixture(scope="module")
def make_root(tmp_path_factory, tiny_model_dir, write_mixture, train_dialogues):
    def make(name: str, stages=("8k", "32k")) -> Path:
        return _root(tmp_path_factory, tiny_model_dir, write_mixture, train_dialogues, name, stages)

    return make


def _root(tmp_path_factory, tiny_model_dir, write_mixture, dialogues, name: str, stages) -> Path:
    """Base model, two text conversations in ``chatml/text`` and one mixture sequence per stage
    (8k concat, 32k isolated). With the collator present the lengths are its own (it checks them)."""
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(tiny_model_dir, root / "model" / "base")
    conv = root / "chatml" / "text" / "conversations.parquet"
    conv.parent.mkdir(parents=True)
    rows = [
        {"sample_id": f"s{i}", "source": "text", "category": "long_text",
         "messages": [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in d]}
        for i, d in enumerate(dialogues)
    ]
    pq.write_table(pa.Table.from_pylist(rows), conv)
    lengths = (40, 45)
    if _collator_available():
        from training.collator import SampleCollator, SampleStore
        from training.processor import load_processor

        store = SampleStore(root)
        collate = SampleCollator(load_processor(root / "model" / "base"), store)
        lengths = tuple(len(collate(store.conversation(f"s{i}", "text"))) for i in range(2))
    caps = {"8k": (8192, "concat"), "32k": (32768, "isolated")}
    for stage in stages:
        write_mixture(root / "etvlm_mixture" / stage / "mixture.parquet", stage, caps[stage][0], lengths, caps[stage][1])
    return root


def _source(train_batch_file) -> str:
    """The real collator over the mixture shard once it is there, else the saved text batches."""
    return "packed" if _collator_available() else f"file:{train_batch_file}"


def _materialize(root: Path, instance, recipe: str, stage: str, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [checkpoint],
        partition_key=f"{recipe}|{stage}",
        resources={"store": DataStore(root=str(root)), "pipes_subprocess_client": dg.PipesSubprocessClient()},
        run_config={"ops": {"checkpoint": {"config": config}}},
        instance=instance,
        raise_on_error=False,
    )


def _metadata(result) -> dict:
    [mat] = result.asset_materializations_for_node("checkpoint")
    return {k: v.value for k, v in mat.metadata.items()}


def _report(md: dict) -> dict:
    """The checkpoint's training_report.json (every step's loss and learning rate)."""
    return json.loads(Path(md["training_report"]).read_text())


def _failure(result) -> str:
    assert not result.success
    return " ".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def trained(make_root, train_batch_file, instance):
    """mrope_pp 8k (one process), then 32k (torchrun, 2 ranks) from 8k's checkpoint."""
    root = make_root("train-root")
    common = {"batch_source": _source(train_batch_file), "steps": 4, "save_every": 2}
    started = time.perf_counter()
    r8 = _materialize(root, instance, "mrope_pp", "8k", **common)
    t8 = time.perf_counter() - started
    assert r8.success, _failure(r8)
    r32 = _materialize(root, instance, "mrope_pp", "32k", launcher="torchrun", nproc=2, **common)
    assert r32.success, _failure(r32)
    print(f"checkpoint 8k: {t8:.1f} s, 32k (torchrun x2): {time.perf_counter() - started - t8:.1f} s")
    return root, r8, r32


def test_8k_trains_through_pipes_with_metadata(trained, instance):
    root, r8, _ = trained
    md = _metadata(r8)
    final = root / "checkpoints" / "mrope_pp" / "8k" / "final"
    assert md["checkpoint"] == str(final) and (final / "model.safetensors").is_file()
    assert md["steps"] == 4 and md["resumed_from_step"] == 0
    report = _report(md)
    assert [s for s, _ in report["losses"]] == [1, 2, 3, 4] and [s for s, _ in report["lrs"]] == [1, 2, 3, 4]
    assert md["final_loss"] < md["first_loss"] and md["final_loss"] == round(report["losses"][-1][1], 4)
    assert md["tokens"] > 0 and md["tokens"] == md["tokens_this_run"] and md["tokens_per_s"] > 0 and md["peak_memory_mb"] > 0
    # the losses as a short table (step | loss | learning rate), not a JSON array of every step
    table = md["losses"].splitlines()
    assert table[0] == "| step | loss | learning rate |" and len(table) == 2 + 4
    assert table[2].startswith(f"| 1 | {report['losses'][0][1]:.4f} | ")
    assert md["loss_trend"].startswith(f"{md['first_loss']:.4f} ") and md["loss_trend"].endswith(f" {md['final_loss']:.4f}")
    assert md["loss_curve"].startswith("![loss and learning rate](data:image/png;base64,")
    from PIL import Image

    assert Image.open(md["loss_curve_png"]).size[0] >= 900
    assert md["initialized_from"] == str(root / "model" / "base") and md["initialized_from_partition"] == "model/base"
    assert md["world_size"] == 1 and md["trainable_params"] > 0 and md["frozen_params"] > 0
    assert md["recipe"] == "mrope_pp" and md["stage"] == "8k"
    assert json.loads((root / "checkpoints" / "mrope_pp" / "8k" / "run.json").read_text())["method"]["rope"]["method"] == "mrope++"
    # the job's log lines streamed into the run through Pipes
    messages = [e.user_message for e in instance.all_logs(r8.run_id)]
    assert any("step 4/4 loss" in m for m in messages)
    assert any("checkpoint written to" in m for m in messages)
    model = load_with_position_method(final)
    assert read_position_method(model.config).rope.method == "mrope++"
    assert weights_fingerprint(model) == md["weights_fingerprint"]


def test_32k_starts_from_8k_weights_under_torchrun(trained, instance):
    root, r8, r32 = trained
    md8, md32 = _metadata(r8), _metadata(r32)  # exactly one materialisation: only rank 0 reports
    final8 = root / "checkpoints" / "mrope_pp" / "8k" / "final"
    assert md32["initialized_from"] == str(final8) and md32["initialized_from_partition"] == "mrope_pp|8k"
    assert md32["initial_weights_fingerprint"] == md8["weights_fingerprint"]
    assert md32["initial_weights_fingerprint"] == weights_fingerprint(load_with_position_method(final8))
    assert md32["world_size"] == 2
    assert md32["weights_fingerprint"] != md8["weights_fingerprint"]
    assert "torch.distributed.run" in md32["command"] and "--nproc_per_node 2" in md32["command"]
    # file source - 8k: one process saw sequences 0,1,0,1; 32k: each step saw 0 (rank 0) and 1 (rank 1).
    # packed source - one sequence per stage: 8k saw it 4 times, 32k 4 x 2 ranks.
    assert md32["tokens"] == 2 * md8["tokens"]
    final32 = root / "checkpoints" / "mrope_pp" / "32k" / "final"
    assert read_position_method(load_with_position_method(final32).config).rope.method == "mrope++"


def _kill_training_when(path: Path, timeout: float = 600) -> threading.Thread:
    """Kill the training subprocess (ours, by pid) as soon as ``path`` exists."""
    me = psutil.Process()
    killed: list[int] = []

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not killed:
            if path.exists():
                for child in me.children(recursive=True):
                    try:
                        if "training" in child.cmdline() and "--config" in child.cmdline():
                            child.kill()
                            killed.append(child.pid)
                    except psutil.NoSuchProcess:
                        pass
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.killed = killed  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_killed_run_resumes_from_its_last_saved_step(make_root, train_batch_file, instance):
    root = make_root("resume-root", stages=("8k",))
    out = root / "checkpoints" / "v2pe" / "8k"
    config = {"batch_source": _source(train_batch_file), "steps": 12, "save_every": 2}
    watcher = _kill_training_when(out / "state" / "step_2")
    first = _materialize(root, instance, "v2pe", "8k", **config)
    watcher.join(timeout=5)
    assert watcher.killed, "the training process was never killed"
    assert not first.success and not (out / "final").exists()
    saved = sorted(int(p.name.split("_")[1]) for p in (out / "state").glob("step_*") if not p.name.endswith(".tmp"))
    assert saved and saved[-1] >= 2 and saved[-1] < 12
    tokens_before = json.loads((out / "state" / f"step_{saved[-1]}" / "trainer_state.json").read_text())["tokens"]

    second = _materialize(root, instance, "v2pe", "8k", **config)
    assert second.success, _failure(second)
    md = _metadata(second)
    assert md["resumed_from_step"] == saved[-1] and md["resumed_from"].endswith(f"step_{saved[-1]}")
    assert [s for s, _ in _report(md)["losses"]] == list(range(1, 13))  # the counter continued
    # tokens cover the whole run: the steps before the kill and the resumed ones
    assert md["tokens"] == tokens_before + md["tokens_this_run"] and md["tokens_this_run"] < md["tokens"]
    assert (out / "final" / "model.safetensors").is_file()
    model = load_with_position_method(out / "final")
    assert read_position_method(model.config).v2pe is not None


def test_bad_configuration_fails_before_launch(make_root, instance, monkeypatch):
    root = make_root("bad-root", stages=("32k",))
    cfg = {"batch_source": "packed", "steps": 2}

    text = _failure(_materialize(root, instance, "mrope_pp", "32k", **cfg))
    assert "starts from stage '8k'" in text and "materialise checkpoint mrope_pp|8k first" in text
    text = _failure(_materialize(root, instance, "mrope_pp", "8k", **cfg))
    assert "mixture shard for stage '8k' is missing" in text
    # a stage the recipe does not train is no partition at all (nothing to stay missing forever)
    assert "mrope_pp|64k" not in checkpoint_partitions.get_partition_keys()
    with pytest.raises(dg.DagsterUnknownPartitionError):
        _materialize(root, instance, "mrope_pp", "64k", **cfg)
    text = _failure(_materialize(root, instance, "mrope_pp", "8k", launcher="torchrun", nproc=0, **cfg))
    assert "nproc must be >= 1" in text

    recipes = root / "recipes.json"
    recipes.write_text(json.dumps([{"name": "mrope_pp", "method": {"rope": {"method": "rope-9000"}}, "stages": ["32k"]}]))
    monkeypatch.setenv("GIRAFFE_RECIPES", str(recipes))
    text = _failure(_materialize(root, instance, "mrope_pp", "32k", **cfg))
    assert "unknown position method 'rope-9000'" in text
    assert not (root / "checkpoints").exists()  # nothing was launched or written


def test_giraffe_train_cli_runs_stages_in_order(make_root, tmp_path_factory, train_batch_file, monkeypatch, capsys):
    from pipelines.cli import main

    root = make_root("cli-root", stages=("8k",))
    home = tmp_path_factory.mktemp("cli-home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # main() sets both; monkeypatch restores them
    monkeypatch.setenv("GIRAFFE_DATA_ROOT", str(root))
    args = ["train", "--recipe", "mrope_pp", "--steps", "2", "--batch-source", _source(train_batch_file),
            "--data-root", str(root), "--dagster-home", str(home)]
    assert main([*args, "--stages", "64k"]) == 2  # a stage the recipe does not train: no partition, refused
    assert "stage '64k' is not a stage of recipe 'mrope_pp' (8k, 32k)" in capsys.readouterr().err
    assert main([*args, "--stages", "32k"]) == 2  # refused before any run: 8k was never trained
    assert "materialise checkpoint mrope_pp|8k first" in capsys.readouterr().err
    assert main([*args, "--stages", "8k"]) == 0
    out = capsys.readouterr().out
    assert "mrope_pp|8k" in out and "over 2 steps" in out and str(root / "checkpoints" / "mrope_pp" / "8k" / "final") in out
    assert main(["train", "--recipe", "nope", "--dagster-home", str(home)]) == 2
