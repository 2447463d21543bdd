"""The checked light processor of a model, kept by the content of the model's files.

Counting needs the tokenizer's Rust backend and Qwen2-VL's image patch rule
(``light_processor``), but checking them needs the processor, and loading the processor
imports torch: 9.5 CPU-s and 400 MB here, paid by every token_counts step (one per shard)
and more than the counting itself on a 10K-row shard. The checked pair is small (the
backend's JSON and four numbers), so the first step stores it and the next ones load it in
0.1 s without transformers.

A stored pair is trusted only for the same model files and library versions: its name is a
hash of every file of the model folder that the tokenizer or the processor reads, the
transformers and tokenizers versions and ``COUNTER_VERSION``; its content must parse into
the same fields and name the same hash. Anything else loads the processor and checks again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from assets.contract.atomic import write_json
from assets.tokens.count import (
    BackendTokenizer,
    ImagePatchRule,
    LightProcessor,
    light_processor,
)

COUNTER_VERSION = 1
# What AutoTokenizer / AutoProcessor read from a model folder (the weights are not among them).
MODEL_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
    "chat_template.jinja", "chat_template.json", "config.json",
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def model_key(model_dir: Path) -> str:
    """Hash of the model folder's tokenizer and processor files, the library versions and the
    rule's version: equal keys mean the same checked pair."""
    digest = hashlib.sha256(f"v{COUNTER_VERSION}\0{_version('transformers')}\0{_version('tokenizers')}".encode())
    for name in MODEL_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            digest.update(f"\0{name}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def _restore(path: Path, key: str) -> LightProcessor | None:
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") != key or stored.get("version") != COUNTER_VERSION:
            return None
        rule = ImagePatchRule(**{k: int(stored["rule"][k]) for k in ("patch_size", "merge_size", "min_pixels", "max_pixels")})
        return LightProcessor(BackendTokenizer(stored["backend"], bool(stored["split_special_tokens"])), rule)
    except Exception:  # noqa: BLE001 - unreadable, truncated, another layout: load and check again
        return None


def counting_processor(model_dir: Path, cache_dir: Path, load: Callable[[], Any]) -> Any:
    """What token_counts counts with for the model in ``model_dir``: the stored checked pair
    when there is one for these files, else ``light_processor(load())`` (stored when it is
    the light pair; another model's processor is returned as it is, and loaded each time)."""
    key = model_key(model_dir)
    path = Path(cache_dir) / f"{key}.json"
    if path.is_file() and (light := _restore(path, key)) is not None:
        return light
    light = light_processor(load())
    if isinstance(light, LightProcessor) and isinstance(light.tokenizer, BackendTokenizer):
        backend, split = light.tokenizer.__getstate__()
        rule = light.image_processor
        write_json(path, {"version": COUNTER_VERSION, "key": key, "backend": backend, "split_special_tokens": split,
                          "rule": {"patch_size": rule.patch_size, "merge_size": rule.merge_size,
                                   "min_pixels": rule.min_pixels, "max_pixels": rule.max_pixels}})
    return light
