"""Forward+backward tokens/s of each position method against the stock rotary module.

The frequency methods only replace a buffer, so they should cost nothing; V2PE replaces
``get_rope_index`` (Python, per sequence, like the stock one), so its cost is the thing to
watch. The model is a random Qwen2-VL of a configurable shape fed text plus images, so the
rope-index path runs. Defaults are tiny enough for a CPU::

    python -m benchmarks.rope_throughput --steps 5
    python -m benchmarks.rope_throughput --hidden-size 256 --heads 4 --mrope-section 8,12,12 \
        --seq-len 2048 --images 8 --steps 10

Methods are timed in interleaved rounds (stock, pi, ..., v2pe, stock, pi, ...) and each
reports its best round, so a busy machine skews all of them alike rather than one. "stock"
is the ``none`` method, whose buffers are bit-identical to the untouched model
(tests/test_apply_method.py).
Prints one JSON object per method (tokens/s, ratio to stock). Results are not committed.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _section(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def build(args):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 1024,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "hidden_size": args.hidden_size,
            "intermediate_size": args.intermediate_size or args.hidden_size * 2,
            "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads,
            "num_key_value_heads": args.kv_heads or args.heads,
            "max_position_embeddings": max(args.seq_len, 32768),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(args.mrope_section)},
        },
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": args.hidden_size, "num_heads": 2, "mlp_ratio": 2},
        image_token_id=1000,
        video_token_id=1001,
        vision_start_token_id=1002,
        vision_end_token_id=1003,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).to(device=args.device, dtype=getattr(torch, args.dtype))
    model.train()
    return model


def batch(args, device):
    """Text with ``--images`` images of 8 x 8 merged tokens each, spread through the sequence."""
    per_image = 64
    n_text = args.seq_len - args.images * per_image
    if n_text < args.images + 1:
        raise SystemExit("--seq-len too short for --images")
    gap = n_text // (args.images + 1)
    ids: list[int] = []
    for _ in range(args.images):
        ids += [5] * gap + [1000] * per_image
    ids += [5] * (args.seq_len - len(ids))
    input_ids = torch.tensor([ids] * args.batch, device=device)
    types = (input_ids == 1000).long()
    grids = torch.tensor([[1, 16, 16]] * args.images * args.batch, device=device)
    pixels = torch.randn(args.images * args.batch * 256, 3 * 2 * 14 * 14, device=device)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": types,
        "image_grid_thw": grids,
        "pixel_values": pixels,
        "labels": input_ids,
    }


def tokens_per_second(model, inputs, steps: int, warmup: int) -> float:
    def step():
        model.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()

    for _ in range(warmup):
        step()
    if inputs["input_ids"].is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if inputs["input_ids"].is_cuda:
        torch.cuda.synchronize()
    return inputs["input_ids"].numel() * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from training.positions.apply import PositionMethodConfig, apply_position_method
    from training.positions.rope import RopeMethodConfig
    from training.positions.v2pe import V2PEConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--intermediate-size", type=int, default=None, help="default: 2 x hidden size")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--mrope-section", type=_section, default=(2, 3, 3))
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--original-length", type=int, default=8192)
    p.add_argument("--target-length", type=int, default=32768)
    args = p.parse_args(argv)

    lengths = {"original_length": args.original_length, "target_length": args.target_length}
    methods = {
        "stock": None,
        "pi": PositionMethodConfig(RopeMethodConfig("pi", **lengths)),
        "ntk": PositionMethodConfig(RopeMethodConfig("ntk", **lengths)),
        "yarn": PositionMethodConfig(RopeMethodConfig("yarn", **lengths)),
        "mrope++": PositionMethodConfig(RopeMethodConfig("mrope++", **lengths)),
        "v2pe": PositionMethodConfig(v2pe=V2PEConfig()),
    }
    model = build(args)
    inputs = batch(args, args.device)
    best = {name: 0.0 for name in methods}
    for _ in range(args.rounds):
        for name, method in methods.items():
            apply_position_method(model, method or PositionMethodConfig())
            best[name] = max(best[name], tokens_per_second(model, inputs, args.steps, args.warmup))
    for name, tps in best.items():
        print(json.dumps({"method": name, "tokens_per_s": round(tps, 1), "ratio": round(tps / best["stock"], 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
