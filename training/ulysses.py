"""Ulysses sequence parallelism for a Qwen2-VL model (DeepSpeed's ``UlyssesSPAttentionHF``).

DeepSpeed's integration replaces the core attention function (``sdpa`` / ``flash_attention_2``)
in transformers' global ``ALL_ATTENTION_FUNCTIONS`` with a wrapper that exchanges sequence
shards for head shards (all-to-all) around it. A VLM has a second user of that table: the
vision tower, whose attention runs per image on the full (unsharded) patch sequence and must
not be exchanged. :func:`enable_ulysses` therefore registers the original function under a
private name first and points the vision config at it; the language model gets the wrapper.
How the sequence is split and the loss combined is in :class:`training.loss.CausalLMLoss`.
"""

from __future__ import annotations

from training.modeling import vision_module

VISION_SUFFIX = "_giraffe_vision"


def keep_vision_attention_local(model, core_attn_implementation: str) -> str:
    """The vision tower keeps the plain ``core`` attention under ``<core>_giraffe_vision``
    (the name keeps ``flash`` in it, so the vision varlen path stays on when it was)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    name = core_attn_implementation + VISION_SUFFIX
    AttentionInterface.register(name, ALL_ATTENTION_FUNCTIONS[core_attn_implementation])
    vision_module(model).config._attn_implementation = name
    return name


def enable_ulysses(model, core_attn_implementation: str, sequence_parallel_size: int):
    """Register DeepSpeed's Ulysses attention for ``model``'s language model; returns the mpu
    (sequence-parallel groups) that ``deepspeed.initialize(mpu=...)`` and the loss need."""
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF

    keep_vision_attention_local(model, core_attn_implementation)
    return UlyssesSPAttentionHF.register_with_transformers(
        model_name_or_path=model,
        core_attn_implementation=core_attn_implementation,
        sequence_parallel_size=sequence_parallel_size,
        micro_batch_size=1,
        seq_length_is_variable=True,
    )
