"""Every asset key and group of the graph, written once.

The stage modules declare their assets with these, the jobs select by these groups and the
automation policy is keyed by them, so renaming a key or a group is a one-line change here.
"""

from __future__ import annotations

import dagster as dg

# Groups, in the order the graph flows (the UI draws one box per group).
RAW_GROUP = "raw_sources"
CHATML_GROUP = "chatml"
VIDEO_GROUP = "video"  # video_frames and token_counts (counting needs the frame plans)
PACKING_GROUP = "packing"  # packed and etvlm_mixture, partitioned by stage
MODEL_GROUP = "model"
TRAINING_GROUP = "training"
BENCHMARK_GROUP = "benchmarks"
EVAL_GROUP = "evaluation"  # eval/<benchmark>, partitioned by recipe|stage
LEADERBOARD_GROUP = "leaderboard"  # eval_base and leaderboard
LMMS_EVAL_GROUP = "lmms_eval"  # on demand only: not in the automatic per-checkpoint evaluations

VIDEO_FRAMES_KEY = dg.AssetKey(["video_frames"])
TOKEN_COUNTS_KEY = dg.AssetKey(["token_counts"])
PACKED_KEY = dg.AssetKey(["packed"])
MIXTURE_KEY = dg.AssetKey(["etvlm_mixture"])
BASE_MODEL_KEY = dg.AssetKey(["model", "base"])
CHECKPOINT_KEY = dg.AssetKey(["checkpoint"])
EVAL_BASE_KEY = dg.AssetKey(["eval_base"])
LEADERBOARD_KEY = dg.AssetKey(["leaderboard"])
LMMS_EVAL_KEY = dg.AssetKey(["eval", "lmms_eval"])


def raw_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", source])


def chatml_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["chatml", source])


def benchmark_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["benchmark", name])


def eval_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["eval", name])
