"""Run by tests/test_training_distributed.py under ``torch.distributed.run --nproc_per_node 2``.

Each rank computes, for every batch in the file, the full-sequence loss and gradients (the
reference) and then the Ulysses sequence-parallel loss with DeepSpeed's attention wrapper over
the 2 ranks; rank 0 writes both to JSON. Gradients of the SP ranks are averaged the way
DeepSpeed/DDP average data-parallel gradients.
"""

import json
import sys

import torch
import torch.distributed as dist


def main(model_dir: str, batch_file: str, out: str) -> None:
    import deepspeed
    from transformers import Qwen2VLForConditionalGeneration

    from training.data import load_batch_file
    from training.distributed import cpu_deepspeed_without_shm_kernel
    from training.loss import CausalLMLoss
    from training.positions.apply import apply_position_method
    from training.ulysses import enable_ulysses

    cpu_deepspeed_without_shm_kernel()
    deepspeed.init_distributed(dist_backend="gloo")
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, attn_implementation="sdpa")
    apply_position_method(model, {"rope": {"method": "mrope++", "original_length": 64, "target_length": 256}})
    batches = load_batch_file(batch_file)
    reference = []
    for batch in batches:
        model.zero_grad()
        loss = CausalLMLoss(model)(**dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        reference.append((float(loss), grads))
    mpu = enable_ulysses(model, "sdpa", 2)
    sp_loss = CausalLMLoss(model, sp_group=mpu.get_sequence_parallel_group())
    rows = []
    for batch, (ref_loss, ref_grads) in zip(batches, reference):
        model.zero_grad()
        loss = sp_loss(**dict(batch))
        loss.backward()
        err = 0.0
        for n, p in model.named_parameters():
            if n in ref_grads:
                g = p.grad.clone() if p.grad is not None else torch.zeros_like(ref_grads[n])
                dist.all_reduce(g)
                err = max(err, float((g / 2 - ref_grads[n]).abs().max()))
        rows.append({"tokens": int(batch["input_ids"].shape[1]), "reference": ref_loss, "ulysses": float(loss),
                     "max_grad_error": err, "max_grad": max(float(g.abs().max()) for g in ref_grads.values())})
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
