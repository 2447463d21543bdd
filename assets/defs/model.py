"""model/base: the base VLM every recipe extends.

On the hub, a Qwen2-VL checkpoint (``snapshot_download``). On the embedded default, the tiny
Qwen2-VL taught the embedded benchmarks' task types at its original context
(``eval.base_model``: cached by content hash, so a re-materialisation with the same inputs takes
seconds); ``teach: false`` keeps the random weights of the fast unit tests.
"""

import json

import dagster as dg

from assets.contract.markdown import markdown_table, png_markdown
from assets.defs.evaluation import EvalConfig
from assets.defs.keys import BASE_MODEL_KEY, MODEL_GROUP
from assets.defs.metadata import TRAINING_TEAM
from assets.defs.resources import DataStore, SourceHub
from assets.sources.embedded.text import corpus
from eval.base_model import BaseModelSpec, build_base_model
from training.base_training import BaseTrainingConfig, lr_factor
from training.report import training_curves_png
from training.tiny_model import base_record

# Bump when the embedded tiny model or the download changes what lands on disk.
BASE_MODEL_CODE_VERSION = "4"


class BaseModelConfig(dg.Config):
    hub_model_id: str = "Qwen/Qwen2-VL-7B-Instruct"
    """Model downloaded in ``hub`` mode (any Qwen2-VL / Qwen2.5-VL checkpoint)."""
    tokenizer_documents: int = 400
    """Embedded mode: documents of sample text the tiny tokenizer is trained on."""
    teach: bool = True
    """Embedded mode: teach the tiny model the benchmarks' task types (False: random weights)."""
    original_length: int = 256
    """Embedded mode: the tiny model's original context L_V in tokens (training items are no
    longer; the position methods extend from it; evaluation goes several times past it)."""
    steps: int = BaseTrainingConfig.steps
    batch_size: int = BaseTrainingConfig.batch_size
    learning_rate: float = BaseTrainingConfig.learning_rate

    def spec(self) -> BaseModelSpec:
        training = BaseTrainingConfig(steps=self.steps, batch_size=self.batch_size, learning_rate=self.learning_rate)
        return BaseModelSpec(
            training=training,
            original_length=self.original_length,
            tokenizer_documents=self.tokenizer_documents,
            teach=self.teach,
        )


@dg.asset(
    key=BASE_MODEL_KEY,
    group_name=MODEL_GROUP,
    code_version=BASE_MODEL_CODE_VERSION,
    owners=[TRAINING_TEAM],
    kinds={"transformers", "pytorch"},
    description="Base model and processor (save_pretrained layout). Embedded default: a tiny Qwen2-VL with a "
    "BPE tokenizer trained on the sample text (real special tokens), taught the embedded benchmarks' task "
    "types at its original context (items from the benchmarks' generators at other seeds; cached by content hash).",
)
def base_model(context: dg.AssetExecutionContext, config: BaseModelConfig, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
    out = store.stage_dir("model", "base")
    md: dict = {}
    if hub.mode == "hub":
        from huggingface_hub import snapshot_download

        path = snapshot_download(config.hub_model_id, local_dir=str(out), token=hub.token)
        kind = config.hub_model_id
    else:
        spec = config.spec()
        result = build_base_model(
            out,
            store.stage_dir("model", "base_training"),
            lambda: corpus(seed=hub.seed, n_documents=config.tokenizer_documents),
            spec,
            EvalConfig().run_config("embedded"),
            log=context.log.info,
        )
        path = result.path
        record = result.record
        kind = "tiny-qwen2-vl (" + ("taught the benchmarks' task types" if spec.teach else "random weights") + ")"
        md.update(
            cached=result.cached,
            original_length=record.get("original_length"),
            training_steps=record.get("steps", 0),
            training_minutes=record.get("minutes", 0.0),
        )
        if result.held_out:
            md["held_out_accuracy"] = dg.MetadataValue.md(
                "Held-out training items (other seeds than the benchmarks'), accuracy % before and after:\n\n"
                + markdown_table(result.held_out)
            )
        if result.phases:
            md["curriculum"] = dg.MetadataValue.md(
                "The curriculum (eval.base_model.Phase): each phase draws its batches from the items it admits.\n\n"
                + markdown_table(result.phases)
            )
        if result.losses:
            lrs = [(s, spec.training.learning_rate * lr_factor(s - 1, spec.training)) for s, _ in result.losses]
            png = training_curves_png(result.losses, lrs, "base model: answer")
            md["loss_curve"] = dg.MetadataValue.md(png_markdown(png, "loss"))
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
            "base_record": dg.MetadataValue.json(base_record(cfg) or {}),
            **md,
        }
    )
