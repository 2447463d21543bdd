"""Shipped DeepSpeed configs (zero2.json, zero3_offload.json); see training/ds.py."""
