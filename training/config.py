"""The training job's configuration: one typed record, read from JSON and/or command-line flags.

Everything the job needs is here, so a run is reproducible from its ``run.json`` alone and the
Dagster asset only has to write that file. :func:`validate` checks it *before* any model or
data is loaded (missing shards, an unknown position method, a stage that does not exist, a
DeepSpeed file that is not JSON ...) and reports every problem at once, so a bad launch fails in
a second instead of after minutes of model loading on a GPU host.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.recipes import stage_capacities

LR_SCHEDULES = ("cosine", "linear", "constant")
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2", "flex_attention")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConfigError(ValueError):
    """A training configuration that cannot run; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid training config:\n  - " + "\n  - ".join(self.problems))


@dataclass
class TrainConfig:
    """One training run (one stage of one recipe, or a free-standing run from the CLI).

    A micro-batch is always one packed sequence (batch size 1, no padding): the packer already
    filled it to the stage capacity, so throughput is set by ``gradient_accumulation`` and the
    number of data-parallel ranks.
    """

    model_path: str
    """Initial weights: the base model folder, the previous stage's ``final`` folder, or a hub id."""
    output_dir: str
    """Run folder: ``final/`` (the checkpoint), ``state/step_<n>/`` (resumable state), plots."""
    recipe: str = ""
    stage: str = ""
    """Stage name (``8k``, ``32k`` ...); its capacity comes from ``training.recipes``."""
    method: dict[str, Any] | None = None
    """Position method dict (``{"rope": {...}, "v2pe": {...}}``); None keeps the one recorded in the model."""
    capacity: int | None = None
    """Sequence capacity in tokens; defaults to the stage's. Longer batches are an error."""
    shards: list[str] = field(default_factory=list)
    """Packed/mixture shard files (``etvlm_mixture/<stage>/mixture.parquet``)."""
    data_root: str = "data"
    """Where the collator resolves samples (chatml tables, frames)."""
    batch_source: str = "packed"
    """``packed`` (the collator over ``shards``), ``file:<path>`` (a ``torch.save``'d list of
    model-kwargs dicts) or ``module:function`` (``function(cfg, processor)`` returns a sequence)."""

    steps: int = 4
    """Optimiser steps for this stage (a resumed run continues up to the same number)."""
    learning_rate: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    """The schedule decays to ``learning_rate * min_lr_ratio``."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    """Gradient clipping (0 disables)."""
    gradient_accumulation: int = 1

    lora: bool = False
    """False: the whole LLM backbone trains. True: LoRA adapters on it (merged for the final checkpoint)."""
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))

    gradient_checkpointing: bool = True
    loss_chunk_size: int = 4096
    """Logits are computed for labelled positions only, this many at a time (0: the model's
    own loss over full S x V logits; see training/loss.py)."""
    attn_implementation: str = "auto"
    """``auto``: flash_attention_2 when flash-attn is installed and a GPU is present, else sdpa."""
    dtype: str = "auto"
    """``auto``: bfloat16 on a GPU, float32 on CPU."""
    deepspeed: str | None = None
    """DeepSpeed JSON config (e.g. ``training/configs/zero2.json``); None trains with torch (DDP when WORLD_SIZE > 1)."""
    sequence_parallel_size: int = 1
    """Ulysses sequence parallelism degree (DeepSpeed only; see docs/training.md)."""

    save_every: int = 0
    """Save resumable state every N steps (0: only at the end)."""
    keep_states: int = 2
    """How many ``state/step_<n>`` folders to keep (older ones are deleted)."""
    resume: bool = True
    """Continue from the latest compatible ``state/step_<n>`` when one exists."""
    log_every: int = 1
    seed: int = 0

    # -- (de)serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError([f"unknown config keys {unknown}; known keys: {sorted(known)}"])
        missing = [k for k in ("model_path", "output_dir") if not data.get(k)]
        if missing:
            raise ConfigError([f"missing required config key {k!r}" for k in missing])
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError([f"config file {path} does not exist"]) from None
        except json.JSONDecodeError as err:
            raise ConfigError([f"config file {path} is not valid JSON: {err}"]) from None
        return cls.from_dict(data)

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    # -- derived values ---------------------------------------------------------------------

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def final_dir(self) -> Path:
        return self.output_path / "final"

    @property
    def state_root(self) -> Path:
        return self.output_path / "state"

    def resolved_capacity(self) -> int | None:
        if self.capacity:
            return int(self.capacity)
        if self.stage:
            return stage_capacities().get(self.stage)
        return None

    def resume_fingerprint(self) -> str:
        """Hash of everything that makes saved state reusable: a state written under a different
        model, method, data or schedule must not be resumed (the run starts over instead)."""
        skip = {"output_dir", "save_every", "keep_states", "resume", "log_every", "attn_implementation", "loss_chunk_size"}
        data = {k: v for k, v in self.to_dict().items() if k not in skip}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- validation (no model, no data loaded) ----------------------------------------------------


def _flash_attn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def _check_model_path(path: str, problems: list[str]) -> None:
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            problems.append(f"model_path {path} has no config.json (not a save_pretrained folder)")
    elif p.is_absolute() or path.startswith(".") or not _HUB_ID.match(path):
        problems.append(f"model_path {path} does not exist (and is not a hub id like 'Qwen/Qwen2-VL-2B-Instruct')")


def _check_method(method: dict[str, Any] | None, problems: list[str]) -> None:
    if method is None:
        return
    if not isinstance(method, dict):
        problems.append(f"method must be a dict like {{'rope': {{'method': 'mrope++', ...}}}}, got {method!r}")
        return
    extra = sorted(set(method) - {"rope", "v2pe"})
    if extra:
        problems.append(f"method has unknown keys {extra}; a position method has 'rope' and/or 'v2pe'")
        return
    from training.positions.apply import as_position_method

    try:
        as_position_method(method)
    except (ValueError, TypeError) as err:
        problems.append(f"method {json.dumps(method)}: {err}")


def _check_shards(cfg: TrainConfig, capacity: int | None, problems: list[str]) -> None:
    if not cfg.shards:
        problems.append("no shards given: the packed source needs the stage's mixture shards (etvlm_mixture/<stage>/mixture.parquet)")
        return
    import pyarrow.parquet as pq

    for shard in cfg.shards:
        p = Path(shard)
        if not p.is_file():
            problems.append(f"shard {shard} does not exist (materialise etvlm_mixture for stage {cfg.stage or '?'} first)")
            continue
        try:
            schema = pq.read_schema(p)
        except Exception as err:  # noqa: BLE001 - any unreadable file is a config problem here
            problems.append(f"shard {shard} is not a readable parquet file: {err}")
            continue
        missing = {"seq_id", "sample_ids", "sources", "lengths", "capacity"} - set(schema.names)
        if missing:
            problems.append(f"shard {shard} lacks packed-sequence columns {sorted(missing)} (docs/packed_shards.md)")
            continue
        if capacity:
            caps = pq.read_table(p, columns=["capacity"]).column("capacity").to_pylist()
            if caps and max(caps) > capacity:
                problems.append(f"shard {shard} holds sequences of capacity {max(caps)} > this stage's {capacity}")


def _check_batch_source(cfg: TrainConfig, capacity: int | None, problems: list[str]) -> None:
    source = cfg.batch_source
    if source == "packed":
        _check_shards(cfg, capacity, problems)
    elif source.startswith("file:"):
        if not Path(source[5:]).is_file():
            problems.append(f"batch_source file {source[5:]} does not exist")
    elif ":" in source and all(part.strip() for part in source.split(":", 1)):
        pass  # module:function, imported at run time
    else:
        problems.append(f"batch_source {source!r}: use 'packed', 'file:<path>' or 'module:function'")


def _check_deepspeed(cfg: TrainConfig, problems: list[str]) -> None:
    if cfg.deepspeed is None:
        if cfg.sequence_parallel_size > 1:
            problems.append("sequence_parallel_size > 1 (Ulysses) needs a DeepSpeed config (deepspeed=...)")
        return
    path = Path(cfg.deepspeed)
    if not path.is_file():
        problems.append(f"deepspeed config {cfg.deepspeed} does not exist")
        return
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        problems.append(f"deepspeed config {cfg.deepspeed} is not valid JSON: {err}")
        return
    stage = (ds.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        problems.append(f"deepspeed config {cfg.deepspeed}: zero_optimization.stage must be 0-3, got {stage!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise :class:`ConfigError` listing every problem; returns ``cfg`` when it can run.

    Reads only small things (file existence, parquet schemas, JSON): never the model.
    """
    problems: list[str] = []
    _check_model_path(cfg.model_path, problems)
    _check_method(cfg.method, problems)
    capacities = stage_capacities()
    if cfg.stage and cfg.stage not in capacities:
        problems.append(f"stage {cfg.stage!r} is not a known stage {list(capacities)} (GIRAFFE_STAGES)")
    capacity = cfg.resolved_capacity()
    _check_batch_source(cfg, capacity, problems)
    if cfg.steps < 1:
        problems.append(f"steps must be >= 1, got {cfg.steps}")
    if cfg.gradient_accumulation < 1:
        problems.append(f"gradient_accumulation must be >= 1, got {cfg.gradient_accumulation}")
    if not cfg.learning_rate > 0:
        problems.append(f"learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        problems.append(f"lr_schedule {cfg.lr_schedule!r} is not one of {list(LR_SCHEDULES)}")
    if cfg.warmup_steps < 0:
        problems.append(f"warmup_steps must be >= 0, got {cfg.warmup_steps}")
    if not 0 <= cfg.min_lr_ratio <= 1:
        problems.append(f"min_lr_ratio must lie in [0, 1], got {cfg.min_lr_ratio}")
    if cfg.weight_decay < 0 or cfg.max_grad_norm < 0:
        problems.append("weight_decay and max_grad_norm must be >= 0")
    if cfg.loss_chunk_size < 0:
        problems.append(f"loss_chunk_size must be >= 0, got {cfg.loss_chunk_size}")
    if cfg.save_every < 0 or cfg.keep_states < 1 or cfg.log_every < 1:
        problems.append("save_every must be >= 0, keep_states and log_every >= 1")
    if cfg.lora and (cfg.lora_rank < 1 or cfg.lora_alpha <= 0 or not cfg.lora_targets):
        problems.append("LoRA needs lora_rank >= 1, lora_alpha > 0 and at least one target module")
    if cfg.attn_implementation not in ATTN_IMPLEMENTATIONS:
        problems.append(f"attn_implementation {cfg.attn_implementation!r} is not one of {list(ATTN_IMPLEMENTATIONS)}")
    elif cfg.attn_implementation == "flash_attention_2" and not _flash_attn_installed():
        problems.append("attn_implementation flash_attention_2 asked for, but flash-attn is not installed (pip install .[gpu])")
    if cfg.dtype not in DTYPES:
        problems.append(f"dtype {cfg.dtype!r} is not one of {list(DTYPES)}")
    if cfg.sequence_parallel_size < 1:
        problems.append(f"sequence_parallel_size must be >= 1, got {cfg.sequence_parallel_size}")
    _check_deepspeed(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


# -- command line -------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_value(f: dataclasses.Field, text: str) -> Any:
    kind = str(f.type)
    if "None" in kind and text.lower() in ("none", "null"):
        return None
    base = kind.split("|")[0].split("[")[0].strip()
    if base == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if base == "int":
        return int(text)
    if base == "float":
        return float(text)
    if base == "list":
        return json.loads(text) if text.lstrip().startswith("[") else [t for t in text.split(",") if t]
    if base == "dict":
        return json.loads(text)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config run.json`` plus one ``--flag`` per field (a flag overrides the file)."""
    parser.add_argument("--config", help="JSON file with TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(_flag(f.name), dest=f.name, default=None, metavar=f.name.upper(),
                            help=f"{f.type} (default: from --config, else the dataclass default)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            data = json.loads(Path(args.config).read_text())
        except FileNotFoundError:
            raise ConfigError([f"config file {args.config} does not exist"]) from None
        except json.JSONDecodeError as err:
            raise ConfigError([f"config file {args.config} is not valid JSON: {err}"]) from None
    for f in dataclasses.fields(TrainConfig):
        raw = getattr(args, f.name, None)
        if raw is not None:
            try:
                data[f.name] = _parse_value(f, raw)
            except ValueError as err:
                raise ConfigError([f"--{f.name.replace('_', '-')}: {err}"]) from None
    return TrainConfig.from_dict(data)
