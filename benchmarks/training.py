"""Training throughput and the longest trainable sequence of the real training step.

Runs exactly what ``python -m training`` runs per micro-batch - ``CausalLMLoss`` (labelled-token
chunked loss) over one packed sequence, vision tower and merger frozen, LLM trained with AdamW,
activation checkpointing - on a random-weight model of a chosen shape, fed packed sequences of
text with image blocks (so the vision tower and M-RoPE run), and reports tokens/s and model
FLOPs utilisation (MFU). Two modes:

* ``torch``: the model on one device (the single-GPU path of ``python -m training``);
* ``zero3_offload``: DeepSpeed ZeRO-3 with parameters and optimizer offloaded to CPU (the
  shipped ``training/configs/zero3_offload.json``), one process, world size 1.

``--find-max`` tries increasing lengths, each in a fresh subprocess (an OOM must not poison
the next try), and reports the longest that completes its steps. ``--bisect LO,HI`` does the
same by bisection between two lengths (multiples of ``--granularity``), within ``--budget-s``
seconds of wall clock: it reports the longest length that trained and the shortest that did not
(the bracket, when the budget ran out first).

GPU (Qwen2-VL-2B shape, vision tower included)::

    python -m benchmarks.training --shape 2b --device cuda --seq 8192,32768,65536 --steps 6
    python -m benchmarks.training --shape 2b --device cuda --mode zero3_offload --find-max \
        --seq 65536,98304,131072,163840,196608

CPU orientation (tiny shape)::

    python -m benchmarks.training --shape tiny --device cpu --seq 512,2048 --steps 4

MFU counts model FLOPs only (no recomputation): 6 x trainable LLM parameters (embeddings
excluded) per token, causal attention 6 x layers x hidden x T^2 (forward + backward, half the
square), the LM head 6 x hidden x vocab per *labelled* token (the loss only computes those),
and 2 x vision parameters per patch (frozen: forward only). Peak: ``--peak-tflops`` (default
989 = H100/H200 SXM dense bf16). Prints one JSON line per length.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

SHAPES = {
    # Qwen2-VL-2B-Instruct's config.json (text 1.5B + ViT 675M)
    "2b": dict(hidden=1536, inter=8960, layers=28, heads=12, kv=2, vocab=151936, section=(16, 24, 24),
               v_depth=32, v_embed=1280, v_heads=16, v_mlp=4),
    "7b": dict(hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064, section=(16, 24, 24),
               v_depth=32, v_embed=1280, v_heads=16, v_mlp=4),
    "tiny": dict(hidden=64, inter=128, layers=2, heads=4, kv=2, vocab=4096, section=(2, 3, 3),
                 v_depth=2, v_embed=32, v_heads=2, v_mlp=2),
}
IMAGE, VIDEO, V_START, V_END = 10, 11, 12, 13  # token ids of the random model


def build_model(shape: str, device: str, dtype: torch.dtype, attn: str):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    s = SHAPES[shape]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": s["vocab"], "hidden_size": s["hidden"], "intermediate_size": s["inter"],
            "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"], "num_key_value_heads": s["kv"],
            "max_position_embeddings": 262144, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(s["section"])},
            "tie_word_embeddings": shape != "7b",
        },
        vision_config={"depth": s["v_depth"], "embed_dim": s["v_embed"], "hidden_size": s["hidden"],
                       "num_heads": s["v_heads"], "mlp_ratio": s["v_mlp"], "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=V_START, vision_end_token_id=V_END,
        tie_word_embeddings=shape != "7b",
    )
    config._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    return model


def packed_batch(seq: int, vocab: int, image_side: int = 448, image_share: float = 0.25, label_share: float = 0.5):
    """One packed sequence: text with image blocks (``image_side`` px -> (side/28)^2 tokens each)
    making ~``image_share`` of the tokens; labels on the last ``label_share`` of each text run."""
    g = torch.Generator().manual_seed(seq)
    grid = image_side // 14
    per_image = (grid // 2) ** 2
    n_images = int(seq * image_share) // (per_image + 2)
    text_tokens = seq - n_images * (per_image + 2)
    runs = n_images + 1
    ids, types, labels = [], [], []
    for i in range(runs):
        n = text_tokens // runs + (1 if i < text_tokens % runs else 0)
        run = torch.randint(100, vocab, (n,), generator=g).tolist()
        ids += run
        types += [0] * n
        cut = int(n * (1 - label_share))
        labels += [-100] * cut + run[cut:]
        if i < n_images:
            ids += [V_START] + [IMAGE] * per_image + [V_END]
            types += [0] + [1] * per_image + [0]
            labels += [-100] * (per_image + 2)
    input_ids = torch.tensor([ids])
    batch = {
        "input_ids": input_ids,
        "labels": torch.tensor([labels]),
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": torch.tensor([types]),
    }
    if n_images:
        batch["pixel_values"] = torch.randn(n_images * grid * grid, 3 * 2 * 14 * 14, generator=g)
        batch["image_grid_thw"] = torch.tensor([[1, grid, grid]] * n_images)
    return batch


def model_flops(model, batch) -> float:
    """Model FLOPs of one training step on ``batch`` (see the module docstring)."""
    text = model.config.text_config
    llm = model.model.language_model
    embed = llm.embed_tokens.weight.numel()
    p_llm = sum(p.numel() for p in llm.parameters()) - embed
    p_vis = sum(p.numel() for p in model.model.visual.parameters())
    t = batch["input_ids"].shape[1]
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    patches = int(batch["pixel_values"].shape[0]) if "pixel_values" in batch else 0
    attn = 6 * text.num_hidden_layers * text.hidden_size * t * t
    head = 6 * text.hidden_size * text.vocab_size * labelled
    return 6 * p_llm * t + attn + head + 2 * p_vis * patches


def run_one(args, seq: int) -> dict:
    from training.loss import CausalLMLoss
    from training.modeling import count_params, enable_gradient_checkpointing, freeze_vision

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    model = build_model(args.shape, "cpu" if args.mode == "zero3_offload" else args.device, dtype, args.attn)
    freeze_vision(model)
    enable_gradient_checkpointing(model)
    model.train()
    loss_module = CausalLMLoss(model, chunk_size=args.loss_chunk)
    batch = packed_batch(seq, model.config.text_config.vocab_size, image_share=args.image_share)
    flops = model_flops(model, batch)
    params = count_params(model).as_dict()
    if args.mode == "zero3_offload":
        import deepspeed

        from training.config import TrainConfig
        from training.ds import resolve_deepspeed_config, shipped_config

        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        cfg = TrainConfig(model_path="-", output_dir="-", deepspeed=shipped_config("zero3_offload"), learning_rate=1e-5)
        ds_config = resolve_deepspeed_config(cfg, 1, dtype)
        engine, *_ = deepspeed.initialize(
            model=loss_module, model_parameters=[p for p in loss_module.parameters() if p.requires_grad], config=ds_config
        )

        def step(inputs):
            loss = engine(**inputs)
            engine.backward(loss)
            engine.step()
            return loss
    else:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                      fused=device.type == "cuda")

        def step(inputs):
            loss = loss_module(**inputs)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

    inputs = {k: v.to(device) for k, v in batch.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step(dict(inputs))
        float(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]  # median step
    out = {
        "shape": args.shape, "mode": args.mode, "device": args.device, "dtype": args.dtype, "attn": args.attn,
        "seq": seq, "images": int(batch.get("image_grid_thw", torch.zeros(0, 3)).shape[0]),
        "step_s": round(sec, 4), "tokens_per_s": round(seq / sec, 1),
        "tflops_per_s": round(flops / sec / 1e12, 3), "trainable_params": params["trainable"],
        "frozen_params": params["frozen"],
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["mfu"] = round(flops / sec / (args.peak_tflops * 1e12), 4)
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--attn", default=None, help="sdpa (default) or flash_attention_2 where installed")
    p.add_argument("--mode", default="torch", choices=["torch", "zero3_offload"])
    p.add_argument("--seq", default="512,2048", help="comma-separated packed sequence lengths")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-share", type=float, default=0.25)
    p.add_argument("--loss-chunk", type=int, default=4096)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--find-max", action="store_true", help="each length in its own process; stop at the first failure")
    p.add_argument("--bisect", default=None, help="LO,HI: longest trainable length by bisection (each try in its own process)")
    p.add_argument("--granularity", type=int, default=8192)
    p.add_argument("--budget-s", type=float, default=None, help="--bisect: stop trying after this many seconds")
    p.add_argument("--try-timeout-s", type=float, default=None, help="a try that runs longer counts as failed")
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.attn is None:
        import importlib.util

        args.attn = "flash_attention_2" if args.device.startswith("cuda") and importlib.util.find_spec("flash_attn") else "sdpa"
    if args.bisect:
        return bisect_longest(args, argv if argv is not None else sys.argv[1:])
    lengths = [int(s) for s in args.seq.split(",")]
    if not args.find_max:
        for seq in lengths:
            print(json.dumps(run_one(args, seq)), flush=True)
        return 0
    longest = None
    for seq in lengths:
        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--find-max"]
        child = _replace_arg(child, "--seq", str(seq))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.training", *child], capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            print(json.dumps({"seq": seq, "ok": False, "error": tail[0][:300]}), flush=True)
            break
        print(line, flush=True)
        longest = seq
    print(json.dumps({"longest_trainable": longest, "mode": args.mode, "shape": args.shape}), flush=True)
    return 0


def _try_length(argv: list[str], seq: int, timeout: float | None) -> tuple[bool, str]:
    """One length in a fresh process: (trained, the JSON line or the error)."""
    child = [a for a in argv if a not in ("--find-max",)]
    for flag in ("--bisect", "--budget-s", "--try-timeout-s", "--granularity"):
        child = _drop_arg(child, flag)
    child = _replace_arg(child, "--seq", str(seq))
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.training", *child], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, json.dumps({"seq": seq, "ok": False, "error": f"timed out after {timeout:.0f} s"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return False, json.dumps({"seq": seq, "ok": False, "error": tail[0][:300]})
    return True, line


def bisect_longest(args, argv: list[str]) -> int:
    """Longest trainable length in [LO, HI] (multiples of the granularity) by bisection."""
    g = args.granularity
    lo, hi = (int(v) for v in args.bisect.split(","))
    lo, hi = max(g, lo // g * g), max(g, hi // g * g)
    started = time.monotonic()
    ok_at, fail_at = None, None
    ok, line = _try_length(argv, lo, args.try_timeout_s)
    print(line, flush=True)
    if not ok:
        fail_at = lo
    else:
        ok_at = lo
        ok, line = _try_length(argv, hi, args.try_timeout_s)
        print(line, flush=True)
        if ok:
            ok_at = hi
        else:
            fail_at = hi
            while fail_at - ok_at > g:
                if args.budget_s and time.monotonic() - started > args.budget_s:
                    break
                mid = (ok_at + fail_at) // 2 // g * g
                ok, line = _try_length(argv, mid, args.try_timeout_s)
                print(line, flush=True)
                ok_at, fail_at = (mid, fail_at) if ok else (ok_at, mid)
    exact = ok_at is not None and (fail_at is None or fail_at - ok_at <= g)
    print(json.dumps({"longest_trainable": ok_at, "first_failing": fail_at, "exact_to": g if exact else None,
                      "mode": args.mode, "shape": args.shape, "seconds": round(time.monotonic() - started, 1)}), flush=True)
    return 0


def _drop_arg(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
            continue
        if a.startswith(flag + "="):
            continue
        out.append(a)
    return out


def _replace_arg(argv: list[str], flag: str, value: str) -> list[str]:
    return [*_drop_arg(argv, flag), flag, value]


if __name__ == "__main__":
    raise SystemExit(main())
