"""model/base: the base VLM every recipe extends (a tiny random Qwen2-VL on the embedded default)."""


import json

import dagster as dg

from assets.defs.keys import BASE_MODEL_KEY, MODEL_GROUP
from assets.defs.metadata import TRAINING_TEAM
from assets.defs.resources import DataStore, SourceHub
from assets.sources.embedded.text import corpus
from training.tiny_model import build_tiny_qwen2_vl

# Bump when the embedded tiny model or the download changes what lands on disk.
BASE_MODEL_CODE_VERSION = "1"


class BaseModelConfig(dg.Config):
    hub_model_id: str = "Qwen/Qwen2-VL-7B-Instruct"
    """Model downloaded in ``hub`` mode (any Qwen2-VL / Qwen2.5-VL checkpoint)."""
    tokenizer_documents: int = 400
    """Embedded mode: documents of sample text the tiny tokenizer is trained on."""


@dg.asset(
    key=BASE_MODEL_KEY,
    group_name=MODEL_GROUP,
    code_version=BASE_MODEL_CODE_VERSION,
    owners=[TRAINING_TEAM],
    kinds={"transformers", "pytorch"},
    description="Base model and processor (save_pretrained layout). Embedded default: a tiny "
    "Qwen2-VL with random weights and a BPE tokenizer trained on the sample text, real special tokens.",
)
def base_model(context: dg.AssetExecutionContext, config: BaseModelConfig, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
    out = store.stage_dir("model", "base")
    if hub.mode == "hub":
        from huggingface_hub import snapshot_download

        path = snapshot_download(config.hub_model_id, local_dir=str(out), token=hub.token)
        kind = config.hub_model_id
    else:
        path = build_tiny_qwen2_vl(out, corpus(seed=hub.seed, n_documents=config.tokenizer_documents))
        kind = "tiny-qwen2-vl (random weights)"
    cfg = json.loads((out / "config.json").read_text())
    text_cfg = cfg.get("text_config", cfg)
    context.log.info(f"base model ready at {path}")
    return dg.MaterializeResult(
        metadata={
            "model": kind,
            "path": dg.MetadataValue.path(str(path)),
            "architecture": ", ".join(cfg.get("architectures") or []),
            "vocab_size": text_cfg.get("vocab_size"),
            "hidden_size": text_cfg.get("hidden_size"),
            "layers": text_cfg.get("num_hidden_layers"),
            "rope_parameters": json.dumps(text_cfg.get("rope_parameters")),
        }
    )
