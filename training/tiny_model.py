"""A tiny Qwen2-VL (random weights) and a BPE tokenizer with the real special tokens.

The embedded default cannot download Qwen2-VL, so it builds the same model class from a
small config and trains a byte-level BPE on the sample text. The special tokens keep their
Qwen2-VL spellings so chat template, token counting, ``mm_token_type_ids`` and the rope-index
path behave as with the real model; only the sizes differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from assets.contract.chat_template import QWEN2_VL_SPECIAL_TOKENS, qwen2_vl_chat_template

BASE_RECORD_KEY = "giraffe_base_model"
"""config.json key of what the base model is (kind, size, how it was trained, its original
context length L_V): the leaderboard's banner and the position methods' default L_V read it."""


def base_record(config) -> dict | None:
    """The ``giraffe_base_model`` record of a model config (object or config.json dict)."""
    data = config.get(BASE_RECORD_KEY) if isinstance(config, dict) else getattr(config, BASE_RECORD_KEY, None)
    return dict(data) if data else None


def original_length(config) -> int | None:
    """L_V, the context the base model was trained at: its record's ``original_length``, else
    the text config's ``max_position_embeddings`` (the advertised context of a hub model)."""
    record = base_record(config) or {}
    if record.get("original_length"):
        return int(record["original_length"])
    text = config.get("text_config", config) if isinstance(config, dict) else (getattr(config, "text_config", None) or config)
    value = text.get("max_position_embeddings") if isinstance(text, dict) else getattr(text, "max_position_embeddings", None)
    return int(value) if value else None


@dataclass(frozen=True)
class TinyModelConfig:
    vocab_size: int = 4096
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    # head_dim 16 -> 8 frequency pairs split 2:3:3 like Qwen2-VL's [16, 24, 24] (x = 1)
    mrope_section: tuple[int, int, int] = (2, 3, 3)
    vision_depth: int = 2
    vision_embed_dim: int = 32
    vision_heads: int = 2
    max_position_embeddings: int = 256  # L_V: the embedded base's original context (eval.base_model), the stages lie beyond it
    rope_theta: float = 1_000_000.0
    initializer_range: float = 0.02
    """Std of the language model's random weights: transformers' default, which the random
    unit-test model keeps (the parity tests' float tolerances are set for its logits). The
    taught base uses ``BASE_INIT_RANGE``."""
    vision_initializer_range: float = 0.02
    seed: int = 0


BASE_INIT_RANGE = 0.2
"""The taught base model's init std. transformers' 0.02 suits a 4,096-wide model (about
1/sqrt(width)); at width 64 it leaves every activation so small that attention is uniform and
the model is nearly linear, and a comparison (is the asked colour the one in the context?) then
has no gradient to start from: measured, "The word is X. Is it Y?" stayed at 50% for 1,500
steps at 0.02 and reached 100% held out within 250 at 0.2."""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """Byte-level BPE over ``texts`` with the Qwen2-VL special tokens at ids 0..13."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN2_VL_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
        model_max_length=1 << 20,
        chat_template=qwen2_vl_chat_template(),
    )


def build_model(tokenizer, cfg: TinyModelConfig = TinyModelConfig()):
    """A Qwen2VLForConditionalGeneration with random (seeded) weights and our token ids."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "max_position_embeddings": cfg.max_position_embeddings,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": cfg.rope_theta,
                "mrope_section": list(cfg.mrope_section),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
            "initializer_range": cfg.initializer_range,
        },
        vision_config={
            "depth": cfg.vision_depth,
            "embed_dim": cfg.vision_embed_dim,
            "hidden_size": cfg.hidden_size,
            "num_heads": cfg.vision_heads,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
            "initializer_range": cfg.vision_initializer_range,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.eval()
    setattr(
        model.config,
        BASE_RECORD_KEY,
        {"kind": "embedded-tiny-random", "parameters": sum(p.numel() for p in model.parameters())},
    )
    return model


def build_tiny_qwen2_vl(out_dir: Path, texts: Iterable[str], cfg: TinyModelConfig = TinyModelConfig()) -> Path:
    """Train the tokenizer, build the model, save both with ``save_pretrained``."""
    from training.processor import build_processor

    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
