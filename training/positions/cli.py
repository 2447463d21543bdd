"""``giraffe rope``: print (and optionally plot) what a position method does to each pair.

The JSON lists, per rotary pair, its M-RoPE axis, the stock inverse frequency, the method's
inverse frequency and their ratio, so a method can be checked by eye before any training:
PI is ``1/s`` everywhere, M-RoPE++ is ``1`` on temporal pairs, a ramp on height pairs and
``1/s`` on width pairs, and so on.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


class _MethodChoices:
    """The registered method names plus ``all``, read from ``training.positions.rope`` only when
    argparse checks or prints them: building the ``giraffe`` parser must not import torch."""

    def _names(self) -> tuple[str, ...]:
        from training.positions.rope import METHOD_NAMES

        return (*METHOD_NAMES, "all")

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


METHOD_CHOICES = _MethodChoices()


def _section(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mrope-section wants comma-separated integers, got {text!r}") from None


def _plot_path(text: str) -> str:
    """``--plot``: a ``.png`` path in a folder that exists and is writable, checked before any work."""
    import os
    from pathlib import Path

    path = Path(text).expanduser()
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"wants a .png file, got {text}")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder")
    return text


def add_rope_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``rope`` sub-command on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "rope",
        help="per-pair inverse frequencies of a position-extension method (JSON)",
        description="Per rotary pair: its M-RoPE axis, the stock inverse frequency, the method's and their "
        "ratio, so a method can be checked by eye before any training (PI is 1/s everywhere; M-RoPE++ is 1 on "
        "temporal pairs, a ramp on height pairs and 1/s on width pairs).",
        epilog="examples:\n"
        "  giraffe rope --method mrope++\n"
        "  giraffe rope --method all --new-base 5e6 --plot scales.png\n"
        "  giraffe rope --method yarn --head-dim 64 --mrope-section 8,12,12 --compact",
    )
    p.add_argument("--method", default="mrope++", choices=METHOD_CHOICES, metavar="METHOD",
                   help="one of %(choices)s ('all': every one)")
    p.add_argument("--head-dim", type=int, default=128, help="attention head dimension (2 x rotary pairs)")
    p.add_argument("--base", type=float, default=1_000_000.0, help="the model's rope base (rope_theta)")
    p.add_argument("--mrope-section", type=_section, default=(16, 24, 24), help="pairs per axis t,h,w")
    p.add_argument("--original-length", type=int, default=8192, help="L_V, the original visual context length")
    p.add_argument("--target-length", type=int, default=32768, help="L', the extended length")
    p.add_argument("--new-base", type=float, help="rope base for method 'base'")
    p.add_argument("--plot", type=_plot_path, help="write a PNG of scale vs pair index here")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.set_defaults(func=cmd_rope)
    return p


def describe(cfg, shape) -> dict[str, Any]:
    """The JSON-ready description of one method (RopeMethodConfig) on one RotaryShape."""
    from training.positions.rope import compute_frequencies

    freqs = compute_frequencies(cfg, shape)
    scale = freqs.scale.tolist()
    return {
        "method": cfg.method,
        "head_dim": shape.head_dim,
        "base": shape.base,
        "mrope_section": list(shape.mrope_section),
        "original_length": cfg.original_length,
        "target_length": cfg.target_length,
        "new_base": cfg.new_base,
        "s": cfg.scale,
        "attention_scaling": freqs.attention_scaling,
        "pairs": [
            {
                "pair": j,
                "paper_d": j + 1,
                "axis": freqs.axes[j],
                "base_inv_freq": float(freqs.base_inv_freq[j]),
                "inv_freq": float(freqs.inv_freq[j]),
                "scale": scale[j],
            }
            for j in range(shape.n_pairs)
        ],
    }


def plot_scales(results: list[dict[str, Any]], out_path: str) -> None:
    """Scale (new / stock frequency, log axis) against pair index, sections shaded; written
    atomically (a temporary file renamed), through the project's one PNG writer."""
    from pathlib import Path

    from assets.contract.markdown import PLOT_WIDE, figure_png, pyplot

    fig, ax = pyplot().subplots(figsize=PLOT_WIDE)
    section = results[0]["mrope_section"]
    start = 0
    for i, n in enumerate(section):
        ax.axvspan(start - 0.5, start + n - 0.5, alpha=0.08 * (i + 1), color="grey", lw=0)
        ax.text(start + n / 2 - 0.5, 1.02, "thw"[i % 3], transform=ax.get_xaxis_transform(), ha="center")
        start += n
    for r in results:
        ax.plot([p["pair"] for p in r["pairs"]], [p["scale"] for p in r["pairs"]], marker=".", label=r["method"])
    ax.set_yscale("log")
    ax.set_xlabel("pair index j (paper d = j + 1)")
    ax.set_ylabel("inv_freq / stock inv_freq")
    first = results[0]
    ax.set_title(
        f"head_dim {first['head_dim']}, base {first['base']:g}, "
        f"L_V {first['original_length']} -> L' {first['target_length']}",
        pad=18,
    )
    ax.legend()
    png = figure_png(fig)
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(out)


def cmd_rope(args: argparse.Namespace) -> int:
    import sys

    from training.positions.rope import RopeMethodConfig, RotaryShape

    if args.method == "all":  # 'base' only when a new base is given
        names = [m for m in METHOD_CHOICES if m != "all" and (m != "base" or args.new_base is not None)]
    else:
        names = [args.method]
    try:
        shape = RotaryShape(head_dim=args.head_dim, base=args.base, mrope_section=args.mrope_section)
        results = [
            describe(
                RopeMethodConfig(
                    method=name,
                    original_length=args.original_length,
                    target_length=args.target_length,
                    new_base=args.new_base,
                ),
                shape,
            )
            for name in names
        ]
    except ValueError as exc:
        print(f"giraffe rope: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            plot_scales(results, args.plot)
        except OSError as exc:
            print(f"giraffe rope: cannot write {args.plot}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    print(json.dumps(results[0] if len(results) == 1 else {"methods": results}, indent=None if args.compact else 2))
    return 0
