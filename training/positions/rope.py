"""Position-extension methods as per-pair inverse frequencies for M-RoPE models.

Every method here answers one question: given the rotary geometry of a model (head_dim, base,
``mrope_section``) and an extension from the original visual context length ``L_V`` to a
target length ``L'``, which inverse frequency should each rotary pair use? The answer is a
vector of ``head_dim / 2`` numbers that replaces the model's ``inv_freq`` buffer. Because the
temporal/height/width split of M-RoPE is done *after* the frequencies (the rotary module
slices the pairs by ``mrope_section``), every method keeps the sections: only the frequency
of each pair changes, never which axis the pair encodes. All of them are computed once, so
none costs anything at run time against the stock rotary module.

Index conventions (the paper and the code count differently, so this is spelled out):

* ``j`` is the 0-based pair index of the ``inv_freq`` buffer, ``0 <= j < head_dim / 2``.
* ``d = j + 1`` is the 1-based index of the GIRAFFE paper (blocks ``A_1 .. A_8x``).
* The stock frequency is ``theta_d = base ** (-2 (d - 1) / |D|) = base ** (-2 j / |D|)``,
  ``|D| = head_dim`` (transformers computes exactly this, in float32, and so do we, so that
  the ``none`` method is bit-identical to the stock buffer).
* ``mrope_section = [2x, 3x, 3x]``: temporal pairs are ``d = 1 .. 2x`` (``j < 2x``), height
  ``d = 2x+1 .. 5x`` (``2x <= j < 5x``), width ``d = 5x+1 .. 8x`` (``5x <= j < 8x``). For
  Qwen2-VL-7B, x = 8 (``[16, 24, 24]``, head_dim 128); for the tiny model x = 1 (``[2, 3, 3]``).

The methods (``s = L' / L_V`` throughout):

* ``none`` - direct extrapolation: the stock frequencies.
* ``base`` - a new rope base (``new_base``), e.g. 1e6 -> 5e6 (GIRAFFE appendix D).
* ``pi`` - position interpolation: every pair divided by ``s`` (transformers ``linear``).
* ``ntk`` - NTK-aware base ``base * s ** (|D| / (|D| - 2))``; equal to transformers'
  ``dynamic`` NTK evaluated at ``seq_len = L'`` with ``factor = 1`` and
  ``max_position_embeddings = L_V`` (the static form of the same rule).
* ``yarn`` - YaRN "by parts": pairs that rotate more than ``beta_fast`` times over ``L_V``
  keep their frequency, pairs that rotate fewer than ``beta_slow`` times are divided by
  ``s``, a linear ramp in ``j`` in between, and the attention temperature
  ``mscale = 0.1 ln(s) + 1`` (applied by the rotary module to cos and sin, as transformers
  does). Same arithmetic and defaults as transformers' ``yarn``.
* ``mrope++`` - GIRAFFE section 3.2: temporal pairs unchanged (extrapolation), width pairs
  divided by ``s`` (interpolation), height pairs a ramp between the two in ``r_d``::

      lambda_d = 2 pi base ** (2 d / |D|),   r_d = L' / lambda_d
      theta'_d = (1/s + (1 - 1/s) (r_d - r_5x) / (r_2x - r_5x)) theta_d,   2x < d <= 5x

  The factor is 1 at ``d = 2x`` (the last temporal pair) and ``1/s`` at ``d = 5x``. The
  extracted paper text prints ``d - r_5x`` in the numerator; it is ``r_d`` (DESIGN.md).
  Note that eq. (4) writes ``2d/|D|`` where the true wavelength of pair d is
  ``2 pi / theta_d = 2 pi base ** (2 (d - 1) / |D|)``; the ramp only uses the ratio
  ``(r_d - r_5x) / (r_2x - r_5x)``, in which that constant factor cancels, so both readings
  give the same frequencies. We implement eq. (4) as printed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

AXES = ("t", "h", "w")

# name -> (shape, config) -> (inverse frequencies, attention scaling); filled by @method below
FrequencyRule = Callable[["RotaryShape", "RopeMethodConfig"], tuple[torch.Tensor, float]]
METHODS: dict[str, FrequencyRule] = {}
_SCALED_METHODS: set[str] = set()  # methods that need original_length and target_length


def method(name: str, *, scaled: bool = False) -> Callable[[FrequencyRule], FrequencyRule]:
    """Register a frequency rule under ``name``: adding a method is one decorated function here
    (the config's validation, the CLI's choices and the recipes read the registry)."""

    def register(rule: FrequencyRule) -> FrequencyRule:
        METHODS[name] = rule
        if scaled:
            _SCALED_METHODS.add(name)
        return rule

    return register


@dataclass(frozen=True)
class RotaryShape:
    """The rotary geometry of a model: what a method is applied to."""

    head_dim: int
    base: float
    mrope_section: tuple[int, ...] = (16, 24, 24)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mrope_section", tuple(int(v) for v in self.mrope_section))
        if self.head_dim <= 2 or self.head_dim % 2:
            raise ValueError(f"head_dim must be an even number > 2, got {self.head_dim}")
        if self.base <= 1:
            raise ValueError(f"rope base must be > 1, got {self.base}")
        if sum(self.mrope_section) != self.head_dim // 2:
            raise ValueError(
                f"mrope_section {list(self.mrope_section)} must sum to head_dim/2 = {self.head_dim // 2}"
            )

    @property
    def n_pairs(self) -> int:
        return self.head_dim // 2

    def pair_axes(self) -> list[str]:
        """The M-RoPE axis ('t', 'h', 'w') each 0-based pair j encodes (transformers' split)."""
        axes: list[str] = []
        for i, n in enumerate(self.mrope_section):
            axes += [AXES[i % 3]] * n
        return axes


@dataclass(frozen=True)
class RopeMethodConfig:
    """Which method, and the lengths it extends between. Independent of any model.

    ``original_length`` is L_V (the original visual context length), ``target_length`` is L'.
    ``new_base`` is only used by ``base``; the ``yarn_*`` fields only by ``yarn`` (defaults
    are YaRN's and transformers').
    """

    method: str = "none"
    original_length: int | None = None
    target_length: int | None = None
    new_base: float | None = None
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    yarn_truncate: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ValueError(f"unknown position method {self.method!r}; choose from {list(METHOD_NAMES)}")
        if self.method in _SCALED_METHODS:
            if not self.original_length or not self.target_length:
                raise ValueError(f"method {self.method!r} needs original_length and target_length")
            if self.original_length <= 0 or self.target_length < self.original_length:
                raise ValueError(
                    f"need 0 < original_length <= target_length, got {self.original_length}, {self.target_length}"
                )
        if self.method == "base" and (self.new_base is None or self.new_base <= 1):
            raise ValueError("method 'base' needs new_base > 1")

    @property
    def scale(self) -> float:
        """s = L' / L_V (1.0 when the lengths are not given)."""
        if not self.original_length or not self.target_length:
            return 1.0
        return self.target_length / self.original_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RopeMethodConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RopeFrequencies:
    """A method's result: the new per-pair inverse frequencies and the cos/sin scaling."""

    inv_freq: torch.Tensor  # float32, (head_dim / 2,)
    base_inv_freq: torch.Tensor  # the stock frequencies of the same shape
    attention_scaling: float = 1.0
    axes: list[str] = field(default_factory=list)

    @property
    def scale(self) -> torch.Tensor:
        """Per-pair ratio new / stock (1 = unchanged, 1/s = fully interpolated)."""
        return self.inv_freq.double() / self.base_inv_freq.double()


def base_inverse_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """theta_j = base ** (-2j / head_dim), with transformers' float32 arithmetic."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))


@method("none")
def _none(shape: RotaryShape, cfg: RopeMethodConfig) -> tuple[torch.Tensor, float]:
    return base_inverse_frequencies(shape.head_dim, shape.base), 1.0


@method("base")
def _new_base(shape: RotaryShape, cfg: RopeMethodConfig) -> tuple[torch.Tensor, float]:
    return base_inverse_frequencies(shape.head_dim, float(cfg.new_base)), 1.0


@method("pi", scaled=True)
def _pi(shape: RotaryShape, cfg: RopeMethodConfig) -> tuple[torch.Tensor, float]:
    return base_inverse_frequencies(shape.head_dim, shape.base) / cfg.scale, 1.0


@method("ntk", scaled=True)
def _ntk(shape: RotaryShape, cfg: RopeMethodConfig) -> tuple[torch.Tensor, float]:
    dim = shape.head_dim
    return base_inverse_frequencies(dim, shape.base * cfg.scale ** (dim / (dim - 2))), 1.0


def yarn_mscale(scale: float) -> float:
    """YaRN's attention temperature sqrt(1/t) = 0.1 ln(s) + 1 (1 when not extending)."""
    return 1.0 if scale <= 1 else 0.1 * math.log(scale) + 1.0


def _yarn_correction_dim(n_rotations: float, dim: int, base: float, length: int) -> float:
    """The (fractional) pair index whose wavelength fits ``n_rotations`` times into ``length``."""
    return dim * math.log(length / (n_rotations * 2 * math.pi)) / (2 * math.log(base))


@method("yarn", scaled=True)
def _yarn(shape: RotaryShape, cfg: RopeMethodConfig) -> tuple[torch.Tensor, float]:
    dim, s = shape.head_dim, cfg.scale
    low = _yarn_correction_dim(cfg.yarn_beta_fast, dim, shape.base, int(cfg.original_length))
    high = _yarn_correction_dim(cfg.yarn_beta_slow, dim, shape.base, int(cfg.original_length))
    if cfg.yarn_truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as transformers: avoid a zero-width ramp
    j = torch.arange(shape.n_pairs, dtype=torch.float32)
    interpolate = torch.clamp((j - low) / (high - low), 0, 1)  # 0: keep, 1: divide by s
    theta = base_inverse_frequencies(dim, shape.base)
    inv_freq = theta / s * interpolate + theta * (1 - interpolate)
    return inv_freq, yarn_mscale(s)


def mrope_plus_plus_factors(shape: RotaryShape, scale: float, target_length: float) -> list[float]:
    """Per-pair multipliers theta'_d / theta_d of M-RoPE++ (list index j = d - 1)."""
    t, h, w = shape.mrope_section
    x2 = t
    if t % 2 or h * 2 != t * 3 or w != h:
        raise ValueError(f"M-RoPE++ needs mrope_section [2x, 3x, 3x], got {list(shape.mrope_section)}")
    x = x2 // 2
    dims = shape.head_dim  # |D|

    def r(d: int) -> float:  # paper eqs. (4), (5), 1-based d
        wavelength = 2 * math.pi * shape.base ** (2 * d / dims)
        return target_length / wavelength

    r2x, r5x = r(2 * x), r(5 * x)
    factors = []
    for d in range(1, 8 * x + 1):
        if d <= 2 * x:
            factors.append(1.0)
        elif d <= 5 * x:
            factors.append(1 / scale + (1 - 1 / scale) * (r(d) - r5x) / (r2x - r5x))
        else:
            factors.append(1 / scale)
    return factors


@method("mrope++", scaled=True)
def _mrope_plus_plus(shape: RotaryShape, cfg: RopeMethodConfig) -> tuple[torch.Tensor, float]:
    factors = torch.tensor(mrope_plus_plus_factors(shape, cfg.scale, float(cfg.target_length)), dtype=torch.float64)
    theta = base_inverse_frequencies(shape.head_dim, shape.base)
    return (theta.double() * factors).float(), 1.0


METHOD_NAMES: tuple[str, ...] = tuple(METHODS)  # none, base, pi, ntk, yarn, mrope++


def needs_lengths(name: str) -> bool:
    """Whether method ``name`` extends from ``original_length`` to ``target_length``."""
    return name in _SCALED_METHODS


def compute_frequencies(cfg: RopeMethodConfig, shape: RotaryShape) -> RopeFrequencies:
    """The method's inverse frequencies (float32, one per pair) and cos/sin scaling."""
    inv_freq, attention_scaling = METHODS[cfg.method](shape, cfg)
    return RopeFrequencies(
        inv_freq=inv_freq.to(torch.float32),
        base_inv_freq=base_inverse_frequencies(shape.head_dim, shape.base),
        attention_scaling=float(attention_scaling),
        axes=shape.pair_axes(),
    )
