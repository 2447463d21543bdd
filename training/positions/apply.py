"""Make a loaded Qwen2-VL / Qwen2.5-VL model use a position-extension method.

Nothing here forks a transformers modeling file. A method reaches the model through the two
places the model itself reads positions from:

* the text rotary module's ``inv_freq`` buffer (and ``original_inv_freq``, which dynamic
  rope code resets to) and its ``attention_scaling`` (YaRN's temperature); the buffers are
  replaced on this model instance, keeping their dtype and device;
* for V2PE, the instance's ``get_rope_index``: it is replaced by :class:`V2PERopeIndex`,
  which both the forward pass (``compute_3d_position_ids``) and generation
  (``_prepare_position_ids_for_generation``) call, so prefill positions and the decode-time
  ``rope_deltas`` come from the V2PE rule without touching either caller.

The method is recorded in ``model.config.giraffe_position_method`` (a plain dict), which
``save_pretrained`` writes into config.json; :func:`load_with_position_method` reads it back
and re-applies it, so a reloaded checkpoint computes the same logits. A plain
``from_pretrained`` keeps the record but not the behaviour.

Decoding: ``generate`` (transformers 5) continues from the prompt's last position + 1, and a
hand-written cached loop gets ``rope_deltas`` from our rope index; both equal the V2PE rule
when the prompt ends in text (it always does with the chat template). A prompt that ends in
visual tokens would continue at ``last + 1`` under ``generate`` instead of ``ceil(last) + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.positions.rope import RopeMethodConfig, RotaryShape, compute_frequencies, needs_lengths
from training.positions.v2pe import IMAGE, VIDEO, DeltaSampler, V2PEConfig, v2pe_mrope_positions

CONFIG_KEY = "giraffe_position_method"
_RUNTIME_ROPE_TYPES = ("dynamic", "longrope")  # these recompute inv_freq inside forward


@dataclass(frozen=True)
class PositionMethodConfig:
    """A frequency method plus, optionally, V2PE positions (they compose)."""

    rope: RopeMethodConfig = RopeMethodConfig()
    v2pe: V2PEConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rope": self.rope.to_dict(), "v2pe": self.v2pe.to_dict() if self.v2pe else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PositionMethodConfig:
        v2pe = data.get("v2pe")
        return cls(
            rope=RopeMethodConfig.from_dict(data.get("rope") or {}),
            v2pe=V2PEConfig.from_dict(v2pe) if v2pe else None,
        )


def with_original_length(method: dict[str, Any], length: int | None) -> dict[str, Any]:
    """A method dict whose scaled rope method lacks ``original_length`` gets ``length`` (the
    model's L_V); anything else is returned as it is."""
    rope = method.get("rope")
    if not isinstance(rope, dict) or rope.get("original_length") or not length or not needs_lengths(str(rope.get("method"))):
        return method
    return {**method, "rope": {**rope, "original_length": int(length)}}


def as_position_method(method: PositionMethodConfig | RopeMethodConfig | V2PEConfig | dict) -> PositionMethodConfig:
    if isinstance(method, PositionMethodConfig):
        return method
    if isinstance(method, RopeMethodConfig):
        return PositionMethodConfig(rope=method)
    if isinstance(method, V2PEConfig):
        return PositionMethodConfig(v2pe=method)
    if isinstance(method, dict):
        return PositionMethodConfig.from_dict(method)
    raise TypeError(f"not a position method: {method!r}")


# -- finding the parts of the model -------------------------------------------------------


def _text_config(model):
    config = model.config
    return getattr(config, "text_config", None) or config


def find_text_rotary(model) -> torch.nn.Module:
    """The language model's rotary module (not the vision tower's)."""
    found = [
        m
        for name, m in model.named_modules()
        if name.split(".")[-1] == "rotary_emb" and "visual" not in name.split(".") and hasattr(m, "inv_freq")
    ]
    if len(found) != 1:
        raise ValueError(f"expected one text rotary module named 'rotary_emb', found {len(found)}")
    return found[0]


def _rope_parameters(text_config) -> dict[str, Any]:
    params = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
    return dict(params)


def model_rotary_shape(model) -> RotaryShape:
    """head_dim, base and mrope_section of the model's text rotary embedding."""
    text_config = _text_config(model)
    params = _rope_parameters(text_config)
    base = params.get("rope_theta", getattr(text_config, "rope_theta", None))
    if base is None:
        raise ValueError("the model config has no rope_theta")
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    rotary = find_text_rotary(model)
    section = getattr(rotary, "mrope_section", None) or params.get("mrope_section")
    if section is None:
        raise ValueError("the model has no mrope_section: not an M-RoPE model")
    return RotaryShape(head_dim=int(head_dim), base=float(base), mrope_section=tuple(section))


def _rope_index_owners(model) -> list[torch.nn.Module]:
    """The modules whose ``get_rope_index`` the model calls (the inner model in transformers 5)."""
    owners = []
    for m in (getattr(model, "model", None), model):
        if m is not None and hasattr(m, "get_rope_index") and m not in owners:
            owners.append(m)
    if not owners:
        raise ValueError("the model has no get_rope_index: V2PE needs a Qwen2-VL style model")
    return owners


def _replace_buffer(module: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    module.register_buffer(name, value.to(device=old.device, dtype=old.dtype).clone(), persistent=False)


# -- V2PE rope index ----------------------------------------------------------------------


class V2PERopeIndex:
    """Drop-in for ``get_rope_index``: V2PE M-RoPE positions and integer ``rope_deltas``.

    Same contract as transformers': ``(3, batch, seq)`` positions (float here, zero on
    padding) and ``(batch, 1)`` deltas such that the next token's position is
    ``seq_index + delta``. Deltas are drawn while ``owner.training`` is true, else fixed.
    """

    def __init__(self, owner: torch.nn.Module, config: V2PEConfig) -> None:
        self.owner = owner
        self.config = config
        self.sampler = DeltaSampler(config)
        model_config = owner.config
        vision = getattr(model_config, "vision_config", None)
        self.spatial_merge_size = int(getattr(vision, "spatial_merge_size", 2))
        self.tokens_per_second = getattr(vision, "tokens_per_second", None)  # Qwen2.5-VL only
        self.image_token_id = getattr(model_config, "image_token_id", None)
        self.video_token_id = getattr(model_config, "video_token_id", None)

    def token_types(self, input_ids: torch.Tensor) -> torch.Tensor:
        types = torch.zeros_like(input_ids)
        if self.image_token_id is not None:
            types[input_ids == self.image_token_id] = IMAGE
        if self.video_token_id is not None:
            types[input_ids == self.video_token_id] = VIDEO
        return types

    def __call__(
        self,
        input_ids: torch.Tensor,
        mm_token_type_ids: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        **_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if mm_token_type_ids is None:
            mm_token_type_ids = self.token_types(input_ids)
        batch, seq = input_ids.shape
        positions = torch.zeros(3, batch, seq, dtype=torch.float32, device=input_ids.device)
        image_grids = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
        video_grids = iter(video_grid_thw.tolist() if video_grid_thw is not None else [])
        intervals = None
        if self.tokens_per_second is not None and video_grid_thw is not None:
            seconds = second_per_grid_ts.tolist() if second_per_grid_ts is not None else [1.0] * len(video_grid_thw)
            intervals = iter([self.tokens_per_second * float(s) for s in seconds])
        training = bool(self.owner.training)
        deltas = []
        for b in range(batch):
            keep = attention_mask[b].bool() if attention_mask is not None else torch.ones(seq, dtype=torch.bool)
            types = mm_token_type_ids[b][keep.to(mm_token_type_ids.device)].tolist()
            pos, next_position = v2pe_mrope_positions(
                types,
                image_grids,
                video_grids,
                delta=lambda: self.sampler.draw(training),
                spatial_merge_size=self.spatial_merge_size,
                video_time_intervals=intervals,
            )
            positions[:, b, keep.to(positions.device)] = pos.to(positions.device)
            deltas.append(next_position - len(types))
        return positions, torch.tensor(deltas, dtype=torch.long, device=input_ids.device).unsqueeze(1)


def _stock_rope_index_everywhere(model) -> None:
    for owner in _rope_index_owners(model):
        if isinstance(owner.__dict__.get("get_rope_index"), V2PERopeIndex):
            del owner.__dict__["get_rope_index"]


# -- public API -----------------------------------------------------------------------------


def apply_position_method(model, method: PositionMethodConfig | RopeMethodConfig | V2PEConfig | dict):
    """Make ``model`` (Qwen2-VL / Qwen2.5-VL, loaded) use ``method``; returns the model.

    Frequencies are always computed from the config's stock base, so applying a second
    method replaces the first rather than stacking on it.
    """
    if isinstance(method, dict):  # a recipe may leave L_V to the model it is applied to
        from training.tiny_model import original_length

        method = with_original_length(method, original_length(model.config))
    cfg = as_position_method(method)
    text_config = _text_config(model)
    rope_type = str(_rope_parameters(text_config).get("rope_type", "default"))
    if any(t in rope_type for t in _RUNTIME_ROPE_TYPES):
        raise ValueError(f"rope_type {rope_type!r} recomputes frequencies at run time; load the model with 'default'")
    rotary = find_text_rotary(model)
    freqs = compute_frequencies(cfg.rope, model_rotary_shape(model))
    if freqs.inv_freq.shape != rotary.inv_freq.shape:
        raise ValueError(
            f"method gives {tuple(freqs.inv_freq.shape)} frequencies, model has {tuple(rotary.inv_freq.shape)}"
        )
    _replace_buffer(rotary, "inv_freq", freqs.inv_freq)
    if hasattr(rotary, "original_inv_freq"):
        _replace_buffer(rotary, "original_inv_freq", freqs.inv_freq)
    rotary.attention_scaling = freqs.attention_scaling

    _stock_rope_index_everywhere(model)
    if cfg.v2pe is not None:
        for owner in _rope_index_owners(model):
            owner.get_rope_index = V2PERopeIndex(owner, cfg.v2pe)
    for owner in _rope_index_owners(model):
        if hasattr(owner, "rope_deltas"):
            owner.rope_deltas = None  # stale deltas from an earlier method must not leak
    setattr(model.config, CONFIG_KEY, cfg.to_dict())
    return model


def read_position_method(config) -> PositionMethodConfig | None:
    """The method recorded in a model config by :func:`apply_position_method`, if any."""
    data = getattr(config, CONFIG_KEY, None)
    return PositionMethodConfig.from_dict(data) if data else None


def load_with_position_method(path: str | Path, model_cls=None, **from_pretrained_kwargs):
    """``from_pretrained`` plus re-applying the recorded position method."""
    import transformers

    if model_cls is None:
        config = transformers.AutoConfig.from_pretrained(path)
        arch = (getattr(config, "architectures", None) or [None])[0]
        model_cls = getattr(transformers, arch, None) if arch else None
        model_cls = model_cls or transformers.AutoModelForImageTextToText
    model = model_cls.from_pretrained(path, **from_pretrained_kwargs)
    method = read_position_method(model.config)
    if method is not None:
        apply_position_method(model, method)
    return model
