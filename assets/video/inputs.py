"""Model inputs for a planned video: ``pixel_values_videos``, ``video_grid_thw`` and the text.

The stock Qwen2-VL video processor needs torchvision, so this is our own code, written to be
pixel-equal to transformers: frames are rescaled and normalised exactly as
``Qwen2VLImageProcessorPil`` does (float64 rescale, float32 CLIP normalisation) and patchified
in the order of ``Qwen2VLVideoProcessor.patchify`` (tokens in (t, h-block, w-block, h-merge,
w-merge) order, each row flattened as (channel, temporal, patch_h, patch_w)). Tests compare
both against the image processor on the same frames.

Each grid row of a plan is its own ``<|vision_start|><|video_pad|>*k<|vision_end|>`` block, one
pad per merged token (what ``Qwen2VLProcessor.replace_video_token`` writes); see
``assets.video.hybrid`` for why a hybrid video has several rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from assets.contract.chat_template import IMAGE_PAD, VIDEO_PAD, VIDEO_PLACEHOLDER, VISION_END, VISION_START
from assets.video.grid import FRAME_FACTOR, MERGE_SIZE, PATCH_SIZE

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize_frames(frames: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 (H, W, 3) frames of one size -> float32 (T, 3, H, W), as the image processor."""
    x = np.stack([np.asarray(f) for f in frames]).astype(np.float64) * (1 / 255)
    x = x.astype(np.float32)
    x = (x - np.asarray(OPENAI_CLIP_MEAN, dtype=np.float32)) / np.asarray(OPENAI_CLIP_STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def patchify(video: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(T, C, H, W) -> (T/2 * H/14 * W/14, C*2*14*14) and its (t, h, w) grid row.

    An odd T repeats the last frame, as transformers' video processor does."""
    if video.shape[0] % FRAME_FACTOR:
        video = np.concatenate([video, video[-1:]], axis=0)
    t_frames, c, h, w = video.shape
    gt, gh, gw = t_frames // FRAME_FACTOR, h // PATCH_SIZE, w // PATCH_SIZE
    x = video.reshape(gt, FRAME_FACTOR, c, gh // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE, gw // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * FRAME_FACTOR * PATCH_SIZE * PATCH_SIZE), (gt, gh, gw)


def video_pixel_values(
    frames: Sequence[np.ndarray], frame_rows: Sequence[int], grids: Sequence[tuple[int, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Patches of every grid row of one planned video, in row order, and ``video_grid_thw``."""
    patches = []
    for row, grid in enumerate(grids):
        members = [f for f, r in zip(frames, frame_rows) if r == row]
        p, got = patchify(normalize_frames(members))
        if tuple(got) != tuple(grid):
            raise ValueError(f"row {row}: frames give grid {got}, plan says {grid}")
        patches.append(p)
    return np.concatenate(patches, axis=0), np.asarray(grids, dtype=np.int64)


def video_block(grids: Sequence[Sequence[int]]) -> str:
    """The text a planned video occupies: one vision block per grid row."""
    merge = MERGE_SIZE * MERGE_SIZE
    return "".join(VISION_START + VIDEO_PAD * (int(t) * int(h) * int(w) // merge) + VISION_END for t, h, w in grids)


def video_text_tokens(grids: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(visual tokens, vision start/end tokens) that ``video_block`` writes."""
    merge = MERGE_SIZE * MERGE_SIZE
    return sum(int(t) * int(h) * int(w) // merge for t, h, w in grids), 2 * len(grids)


def expand_videos(text: str, videos: Sequence[Sequence[Sequence[int]]]) -> str:
    """Replace each ``<|vision_start|><|video_pad|><|vision_end|>`` in order by its video's blocks."""
    pieces = text.split(VIDEO_PLACEHOLDER)
    if len(pieces) - 1 != len(videos):
        raise ValueError(f"text has {len(pieces) - 1} video placeholders, got {len(videos)} videos")
    out = [pieces[0]]
    for grids, rest in zip(videos, pieces[1:]):
        out += [video_block(grids), rest]
    return "".join(out)


def mm_token_type_ids(input_ids, tokenizer):
    """0 text, 1 image pad, 2 video pad: what transformers 5 needs with any visual input."""
    import torch

    ids = torch.as_tensor(input_ids)
    out = torch.zeros_like(ids)
    out[ids == tokenizer.convert_tokens_to_ids(IMAGE_PAD)] = 1
    out[ids == tokenizer.convert_tokens_to_ids(VIDEO_PAD)] = 2
    return out
