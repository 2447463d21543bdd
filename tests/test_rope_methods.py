"""Frequency methods against references: the paper's formula written out here, and
transformers' own rope init functions (``linear``, ``dynamic``, ``yarn``, the default)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLTextConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding

from training.positions.rope import (
    METHOD_NAMES,
    RopeMethodConfig,
    RotaryShape,
    compute_frequencies,
    yarn_mscale,
)

QWEN2_VL_7B = RotaryShape(head_dim=128, base=1_000_000.0, mrope_section=(16, 24, 24))
TINY = RotaryShape(head_dim=16, base=1_000_000.0, mrope_section=(2, 3, 3))
LENGTHS = [(8192, 32768), (32768, 131072), (1024, 4096), (8192, 12288)]


def _hf_config(shape: RotaryShape, max_position_embeddings: int, **rope) -> Qwen2VLTextConfig:
    """A text config as transformers' rope functions read it (head_dim from hidden/heads)."""
    return Qwen2VLTextConfig(
        hidden_size=shape.head_dim * 4,
        num_attention_heads=4,
        max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_theta": shape.base, "mrope_section": list(shape.mrope_section), **rope},
    )


def paper_mrope_plus_plus(shape: RotaryShape, original: int, target: int) -> list[float]:
    """GIRAFFE eqs. (3)-(5) and the piecewise theta'_d, 1-based d, float64, written out."""
    x = shape.mrope_section[0] // 2
    big_d = shape.head_dim
    s = target / original
    theta = [shape.base ** (-2 * (d - 1) / big_d) for d in range(1, 8 * x + 1)]  # theta[d - 1]
    lam = {d: 2 * math.pi * shape.base ** (2 * d / big_d) for d in range(1, 8 * x + 1)}
    r = {d: target / lam[d] for d in lam}
    out = []
    for d in range(1, 8 * x + 1):
        if 0 < d <= 2 * x:
            out.append(theta[d - 1])
        elif 2 * x < d <= 5 * x:
            out.append((1 / s + (1 - 1 / s) * (r[d] - r[5 * x]) / (r[2 * x] - r[5 * x])) * theta[d - 1])
        else:
            out.append(theta[d - 1] / s)
    return out


@pytest.mark.parametrize("shape", [QWEN2_VL_7B, TINY], ids=["qwen2-vl-7b", "tiny"])
@pytest.mark.parametrize("original,target", LENGTHS)
def test_mrope_plus_plus_equals_paper_formula(shape, original, target):
    got = compute_frequencies(RopeMethodConfig("mrope++", original, target), shape)
    want = torch.tensor(paper_mrope_plus_plus(shape, original, target), dtype=torch.float64)
    torch.testing.assert_close(got.inv_freq.double(), want, rtol=2e-6, atol=0)

    s = target / original
    x = shape.mrope_section[0] // 2
    scale = got.scale
    assert torch.equal(got.inv_freq[: 2 * x], got.base_inv_freq[: 2 * x])  # temporal: untouched
    width = torch.full((3 * x + 1,), 1 / s, dtype=torch.float64)  # d = 5x and the width pairs
    torch.testing.assert_close(scale[5 * x - 1 :], width, rtol=1e-6, atol=0)
    height = scale[2 * x : 5 * x]  # d = 2x+1 .. 5x: strictly inside the ramp, reaching 1/s at d = 5x
    assert torch.all(height[:-1] < 1) and torch.all(height[:-1] > 1 / s - 1e-7)
    assert torch.all(height[1:] <= height[:-1] + 1e-7)
    assert got.axes == ["t"] * (2 * x) + ["h"] * (3 * x) + ["w"] * (3 * x)


def test_mrope_plus_plus_ramp_ignores_the_wavelength_index_shift():
    """Eq. (4) reads base^(2d/|D|); the true wavelength is base^(2(d-1)/|D|): same ramp."""
    shape, original, target = QWEN2_VL_7B, 8192, 32768
    x, s = 8, target / original
    theta = lambda d: shape.base ** (-2 * (d - 1) / shape.head_dim)  # noqa: E731
    got = compute_frequencies(RopeMethodConfig("mrope++", original, target), shape).scale
    for d in range(2 * x + 1, 5 * x + 1):
        ratio = (theta(d) - theta(5 * x)) / (theta(2 * x) - theta(5 * x))  # r_d is proportional to theta_d
        assert got[d - 1].item() == pytest.approx(1 / s + (1 - 1 / s) * ratio, rel=1e-6)


@pytest.mark.parametrize("shape", [QWEN2_VL_7B, TINY], ids=["qwen2-vl-7b", "tiny"])
def test_none_and_base_equal_the_stock_default_init(shape):
    stock, _ = Qwen2VLRotaryEmbedding.compute_default_rope_parameters(_hf_config(shape, 8192, rope_type="default"))
    got = compute_frequencies(RopeMethodConfig("none"), shape)
    assert torch.equal(got.inv_freq, stock) and got.attention_scaling == 1.0

    new = RotaryShape(shape.head_dim, 5_000_000.0, shape.mrope_section)
    stock_new, _ = Qwen2VLRotaryEmbedding.compute_default_rope_parameters(_hf_config(new, 8192, rope_type="default"))
    assert torch.equal(compute_frequencies(RopeMethodConfig("base", new_base=5e6), shape).inv_freq, stock_new)


@pytest.mark.parametrize("shape", [QWEN2_VL_7B, TINY], ids=["qwen2-vl-7b", "tiny"])
@pytest.mark.parametrize("original,target", LENGTHS)
def test_pi_equals_transformers_linear(shape, original, target):
    s = target / original
    want, factor = ROPE_INIT_FUNCTIONS["linear"](_hf_config(shape, target, rope_type="linear", factor=s))
    got = compute_frequencies(RopeMethodConfig("pi", original, target), shape)
    assert torch.equal(got.inv_freq, want)
    assert got.attention_scaling == factor == 1.0


@pytest.mark.parametrize("shape", [QWEN2_VL_7B, TINY], ids=["qwen2-vl-7b", "tiny"])
@pytest.mark.parametrize("original,target", LENGTHS)
def test_ntk_equals_transformers_dynamic_at_the_target_length(shape, original, target):
    """Dynamic NTK with factor 1 at seq_len L' over max_position_embeddings L_V is base * s^(D/(D-2))."""
    config = _hf_config(shape, original, rope_type="dynamic", factor=1.0)
    want, factor = ROPE_INIT_FUNCTIONS["dynamic"](config, None, seq_len=target)
    got = compute_frequencies(RopeMethodConfig("ntk", original, target), shape)
    torch.testing.assert_close(got.inv_freq, want, rtol=1e-6, atol=0)
    assert got.attention_scaling == factor == 1.0


@pytest.mark.parametrize("shape", [QWEN2_VL_7B, TINY], ids=["qwen2-vl-7b", "tiny"])
@pytest.mark.parametrize("original,target", LENGTHS)
@pytest.mark.parametrize("beta_fast,beta_slow", [(32.0, 1.0), (16.0, 2.0)])
def test_yarn_equals_transformers_yarn(shape, original, target, beta_fast, beta_slow):
    s = target / original
    config = _hf_config(
        shape,
        target,
        rope_type="yarn",
        factor=s,
        original_max_position_embeddings=original,
        beta_fast=beta_fast,
        beta_slow=beta_slow,
    )
    want, attention = ROPE_INIT_FUNCTIONS["yarn"](config)
    got = compute_frequencies(
        RopeMethodConfig("yarn", original, target, yarn_beta_fast=beta_fast, yarn_beta_slow=beta_slow), shape
    )
    torch.testing.assert_close(got.inv_freq, want, rtol=1e-6, atol=0)
    assert got.attention_scaling == pytest.approx(attention, rel=1e-12)
    assert got.attention_scaling == pytest.approx(0.1 * math.log(s) + 1)
    assert yarn_mscale(1.0) == 1.0


def test_every_method_keeps_the_section_layout_and_pair_count():
    for method in METHOD_NAMES:
        got = compute_frequencies(RopeMethodConfig(method, 8192, 32768, new_base=5e6), QWEN2_VL_7B)
        assert got.inv_freq.shape == (64,) and got.inv_freq.dtype == torch.float32
        assert got.axes == ["t"] * 16 + ["h"] * 24 + ["w"] * 24
        assert torch.all(got.inv_freq > 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "rope2"}, "unknown position method"),
        ({"method": "pi"}, "needs original_length"),
        ({"method": "yarn", "original_length": 4096, "target_length": 1024}, "original_length <= target_length"),
        ({"method": "base"}, "needs new_base"),
    ],
)
def test_bad_method_configs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RopeMethodConfig(**kwargs)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="sum to head_dim"):
        RotaryShape(128, 1e6, (16, 24, 16))
    with pytest.raises(ValueError, match=r"\[2x, 3x, 3x\]"):
        compute_frequencies(RopeMethodConfig("mrope++", 8192, 32768), RotaryShape(128, 1e6, (32, 16, 16)))


def test_config_round_trips_through_a_dict():
    cfg = RopeMethodConfig("yarn", 8192, 65536, yarn_beta_fast=16.0)
    assert RopeMethodConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.scale == 8.0


# -- the CLI --------------------------------------------------------------------------------


def _run_cli(argv, capsys):
    from pipelines.cli import build_parser

    args = build_parser().parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr()


def test_cli_method_names_match_the_registry():
    from training.positions.cli import METHOD_CHOICES

    assert tuple(METHOD_CHOICES) == (*METHOD_NAMES, "all")
    assert METHOD_NAMES == ("none", "base", "pi", "ntk", "yarn", "mrope++")


def test_cli_prints_per_pair_frequencies_and_scales(capsys):
    rc, out = _run_cli(
        "rope --method pi --head-dim 16 --mrope-section 2,3,3 --original-length 1024 --target-length 4096".split(),
        capsys,
    )
    assert rc == 0
    data = json.loads(out.out)
    assert data["method"] == "pi" and data["s"] == 4.0 and len(data["pairs"]) == 8
    assert [p["axis"] for p in data["pairs"]] == list("tthhhwww")
    assert all(p["scale"] == pytest.approx(0.25) for p in data["pairs"])
    assert data["pairs"][3]["inv_freq"] == pytest.approx(data["pairs"][3]["base_inv_freq"] / 4)


def test_cli_all_methods_with_a_plot(tmp_path, capsys):
    png = tmp_path / "scales.png"
    rc, out = _run_cli(["rope", "--method", "all", "--new-base", "5e6", "--plot", str(png)], capsys)
    assert rc == 0
    methods = json.loads(out.out)["methods"]
    assert [m["method"] for m in methods] == list(METHOD_NAMES)
    mrope = next(m for m in methods if m["method"] == "mrope++")
    assert [p["scale"] for p in mrope["pairs"][:16]] == [1.0] * 16
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reports_a_bad_request_without_a_traceback(capsys):
    rc, out = _run_cli(["rope", "--method", "base"], capsys)
    assert rc == 2 and "needs new_base" in out.err
