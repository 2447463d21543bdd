"""Training configuration, schedule, launch commands, DeepSpeed configs and stage planning:
everything that must be right before a model is loaded (no model is loaded here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from training.config import ConfigError, TrainConfig, add_arguments, config_from_args, validate
from training.ds import SHIPPED, resolve_deepspeed_config, shipped_config
from training.launch import LaunchConfig, build_command
from training.optim import lr_factor
from training.plan import PlanError, plan_stage
from training.recipes import Recipe

MROPE = {"rope": {"method": "mrope++", "original_length": 8192, "target_length": 32768}}


@pytest.fixture()
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


# -- schedule -----------------------------------------------------------------------------------


def test_warmup_then_cosine_reaches_the_floor_after_the_last_step():
    cfg = TrainConfig(model_path="m", output_dir="o", steps=10, warmup_steps=2, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(10)]
    assert factors[:2] == [0.5, 1.0]  # the first step already learns
    assert factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert factors[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert factors[-1] > 0.1
    assert lr_factor(10, cfg) == pytest.approx(0.1)


def test_linear_and_constant_schedules():
    lin = TrainConfig(model_path="m", output_dir="o", steps=4, lr_schedule="linear")
    assert [lr_factor(s, lin) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    const = TrainConfig(model_path="m", output_dir="o", steps=4, lr_schedule="constant", warmup_steps=2)
    assert [lr_factor(s, const) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


# -- validation ---------------------------------------------------------------------------------


def test_a_good_config_validates(model_dir, tmp_path, write_mixture):
    shard = write_mixture(tmp_path / "etvlm_mixture" / "8k" / "mixture.parquet")
    cfg = TrainConfig(model_path=str(model_dir), output_dir=str(tmp_path / "out"), stage="8k", method=MROPE, shards=[str(shard)])
    assert validate(cfg) is cfg
    assert cfg.resolved_capacity() == 8192


def test_every_problem_is_reported_at_once(tmp_path):
    cfg = TrainConfig(
        model_path=str(tmp_path / "nope"),
        output_dir=str(tmp_path / "out"),
        stage="16k",
        method={"rope": {"method": "warp-drive"}},
        shards=[str(tmp_path / "missing.parquet")],
        steps=0,
        lr_schedule="step",
        deepspeed=str(tmp_path / "ds.json"),
    )
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = str(err.value)
    for needle in (
        "model_path", "does not exist", "unknown position method 'warp-drive'", "stage '16k' is not a known stage",
        "missing.parquet does not exist", "steps must be >= 1", "lr_schedule 'step'", "deepspeed config",
    ):
        assert needle in text, needle
    assert len(err.value.problems) == 7


def test_shard_checks_schema_and_capacity(model_dir, tmp_path, write_mixture):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": [1]}), bad)
    big = write_mixture(tmp_path / "big.parquet", "32k", 32768)
    cfg = TrainConfig(model_path=str(model_dir), output_dir="o", stage="8k", shards=[str(bad), str(big)])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "lacks packed-sequence columns" in str(err.value)
    assert "capacity 32768 > this stage's 8192" in str(err.value)


def test_method_with_unknown_top_level_keys_is_rejected(model_dir):
    cfg = TrainConfig(model_path=str(model_dir), output_dir="o", batch_source="file:" + str(model_dir / "config.json"),
                      method={"ropes": {"method": "pi"}})
    with pytest.raises(ConfigError, match="unknown keys"):
        validate(cfg)


def test_unknown_config_keys_and_hub_ids(tmp_path):
    with pytest.raises(ConfigError, match="unknown config keys"):
        TrainConfig.from_dict({"model_path": "m", "output_dir": "o", "stepz": 3})
    hub = TrainConfig(model_path="Qwen/Qwen2-VL-2B-Instruct", output_dir="o", batch_source="tests.x:batches")
    validate(hub)  # a hub id is not a missing path


def test_cli_flags_override_the_json_file(tmp_path, model_dir):
    import argparse

    base = TrainConfig(model_path=str(model_dir), output_dir=str(tmp_path / "o"), steps=4)
    path = base.write_json(tmp_path / "run.json")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([
        "--config", str(path), "--steps", "7", "--lora", "true", "--method", json.dumps(MROPE),
        "--lora-targets", "q_proj,v_proj", "--deepspeed", "none", "--learning-rate", "2e-4",
    ])
    cfg = config_from_args(args)
    assert (cfg.steps, cfg.lora, cfg.method, cfg.lora_targets, cfg.deepspeed, cfg.learning_rate) == (
        7, True, MROPE, ["q_proj", "v_proj"], None, 2e-4)
    assert cfg.model_path == str(model_dir)
    assert TrainConfig.from_json(path) == base


def test_resume_fingerprint_ignores_bookkeeping_only():
    a = TrainConfig(model_path="m", output_dir="o1", save_every=2)
    assert a.resume_fingerprint() == TrainConfig(model_path="m", output_dir="o2", save_every=5, log_every=3).resume_fingerprint()
    assert a.resume_fingerprint() != TrainConfig(model_path="m", output_dir="o1", learning_rate=1e-3).resume_fingerprint()


def test_python_m_training_rejects_a_bad_config_with_status_2(tmp_path, capsys):
    from training.__main__ import main

    code = main(["--model-path", str(tmp_path / "absent"), "--output-dir", str(tmp_path / "o"), "--stage", "8k"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "no shards given" in err


# -- launch commands ------------------------------------------------------------------------------


def test_launch_commands():
    py = "/venv/bin/python"
    assert build_command(LaunchConfig(python=py), "run.json") == [py, "-m", "training", "--config", "run.json"]
    assert build_command(LaunchConfig("torchrun", 4, python=py), "run.json") == [
        py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "-m", "training", "--config", "run.json"]
    ds = build_command(LaunchConfig("deepspeed", 8, python=py, master_port=29511), "run.json", "zero3.json")
    assert ds == [py, "-m", "deepspeed.launcher.runner", "--num_gpus", "8", "--master_port", "29511",
                  "--module", "training", "--config", "run.json", "--deepspeed", "zero3.json"]
    multi = build_command(LaunchConfig("deepspeed", 8, python=py, master_port=1, hostfile="hosts"), "r.json", "z.json")
    assert multi[3:5] == ["--hostfile", "hosts"]
    with pytest.raises(ValueError):
        LaunchConfig("python", 2)
    with pytest.raises(ValueError):
        build_command(LaunchConfig("deepspeed", 1), "run.json")


# -- DeepSpeed configs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,stage", [("zero2", 2), ("zero3_offload", 3)])
def test_shipped_deepspeed_configs_resolve_to_concrete_values(name, stage):
    path = shipped_config(name)
    assert path == str(SHIPPED[name]) and Path(path).is_file()
    cfg = TrainConfig(model_path="m", output_dir="o", deepspeed=path, gradient_accumulation=4, max_grad_norm=0.5,
                      learning_rate=3e-5, weight_decay=0.1, sequence_parallel_size=2)
    ds = resolve_deepspeed_config(cfg, world_size=8, dtype=torch.bfloat16)
    assert ds["zero_optimization"]["stage"] == stage
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (1, 4, 16)
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["sequence_parallel_size"] == 2
    if stage == 3:
        assert ds["optimizer"]["params"]["lr"] == 3e-5 and ds["optimizer"]["params"]["weight_decay"] == 0.1
        assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    # DeepSpeed's own parser accepts it (batch arithmetic, known sections)
    from deepspeed.runtime.config import DeepSpeedConfig

    ds_sp1 = resolve_deepspeed_config(TrainConfig(model_path="m", output_dir="o", deepspeed=path), 1, torch.float32)
    parsed = DeepSpeedConfig(ds_sp1)
    assert parsed.zero_optimization_stage == stage
    assert parsed.train_batch_size == 1


def test_auto_values_are_refused(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}}))
    with pytest.raises(ValueError, match="zero_optimization.reduce_bucket_size"):
        resolve_deepspeed_config(TrainConfig(model_path="m", output_dir="o", deepspeed=str(path)), 1, torch.float32)


# -- planning a recipe's stage --------------------------------------------------------------------


@pytest.fixture()
def root(tmp_path, write_mixture) -> Path:
    (tmp_path / "model" / "base").mkdir(parents=True)
    (tmp_path / "model" / "base" / "config.json").write_text("{}")
    write_mixture(tmp_path / "etvlm_mixture" / "8k" / "mixture.parquet")
    write_mixture(tmp_path / "etvlm_mixture" / "32k" / "mixture.parquet", "32k", 32768)
    return tmp_path


RECIPE = Recipe(name="r", method=MROPE, stages=("8k", "32k"), steps_per_stage=3, extra={"weight_decay": 0.01})


def test_first_stage_starts_from_the_base_model(root):
    plan = plan_stage(RECIPE, "8k", root)
    cfg = plan.config
    assert plan.previous is None
    assert cfg.model_path == str(root / "model" / "base")
    assert cfg.output_dir == str(root / "checkpoints" / "r" / "8k")
    assert cfg.shards == [str(root / "etvlm_mixture" / "8k" / "mixture.parquet")]
    assert (cfg.steps, cfg.method, cfg.weight_decay, cfg.recipe, cfg.stage) == (3, MROPE, 0.01, "r", "8k")


def test_later_stage_needs_the_previous_checkpoint(root):
    with pytest.raises(PlanError, match=r"materialise checkpoint r\|8k first"):
        plan_stage(RECIPE, "32k", root)
    final = root / "checkpoints" / "r" / "8k" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    plan = plan_stage(RECIPE, "32k", root, {"steps": 5})
    assert plan.previous == "8k" and plan.config.model_path == str(final) and plan.config.steps == 5


def test_plan_errors(root):
    with pytest.raises(PlanError, match="not one of recipe 'r'"):
        plan_stage(RECIPE, "64k", root)
    (root / "etvlm_mixture" / "8k" / "mixture.parquet").unlink()
    with pytest.raises(PlanError, match="materialise etvlm_mixture 8k first"):
        plan_stage(RECIPE, "8k", root)
    bad = Recipe(name="b", method={"rope": {"method": "warp"}}, stages=("32k",))  # 32k: its shard exists
    with pytest.raises(PlanError, match="unknown position method 'warp'"):
        plan_stage(bad, "32k", root)
    with pytest.raises(PlanError, match="not TrainConfig fields"):
        plan_stage(Recipe(name="x", method=MROPE, stages=("32k",), extra={"bogus": 1}), "32k", root)
