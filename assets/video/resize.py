"""Resizing a decoded frame to its planned size, the way Qwen2-VL's own tools do.

qwen-vl-utils 0.0.14 resizes the decoded (T, C, H, W) uint8 video with torchvision's
``transforms.functional.resize(video, size, BICUBIC, antialias=True)``. For a uint8 tensor that
function (``_functional_tensor.resize`` in torchvision 0.29) converts to float32, calls
``torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False)``,
clamps to [0, 255], rounds (half to even) and casts back to uint8; a frame already at the
target size is returned untouched. ``resize_torch`` is those steps with torch alone, because
torchvision does not load in every environment (its PyPI wheels need a matching CUDA torch).

The filter is the antialiased bicubic (Keys, a = -0.5, support widened by the downscale
factor, as PIL's), but computed in float32 without PIL's intermediate rounding to uint8, so
``resize_pil`` (PIL bicubic, the project's earlier resize) differs from it on high-contrast
detail: on the benchmark's noisy clips by up to 7-16 levels, in 18-19% of the values (mean
0.15-0.19; benchmarks/video_sampling.md); the issue measured up to 15-25 on its clips.

Interpolation is done per frame (the result of each output pixel does not depend on the batch
it is computed in), in torch's intra-op threads; ``benchmarks/video_sampling.py`` compares the
frames with qwen-vl-utils' own ``fetch_video``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from assets.video.plan import RESIZE_METHODS


def resize_torch(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (h, w, 3), pixel-equal to torchvision's tensor bicubic antialias."""
    import torch

    h, w = size
    if frame.shape[0] == h and frame.shape[1] == w:
        return frame
    if not frame.flags.writeable:  # torch.from_numpy shares memory and warns on read-only arrays
        frame = frame.copy()
    x = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    y = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    y = y.clamp_(0, 255).round_().to(torch.uint8)
    return y[0].permute(1, 2, 0).contiguous().numpy()


def resize_pil(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bicubic to (height, width): the project's resize before the torch one."""
    from PIL import Image

    h, w = size
    if frame.shape[0] == h and frame.shape[1] == w:
        return frame
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BICUBIC))


RESIZERS: dict[str, Callable[[np.ndarray, tuple[int, int]], np.ndarray]] = {"torch": resize_torch, "pil": resize_pil}


def resize_frame(frame: np.ndarray, size: tuple[int, int], method: str = "torch") -> np.ndarray:
    """``frame`` at ``size`` (height, width) with the named method (``RESIZE_METHODS``)."""
    try:
        fn = RESIZERS[method]
    except KeyError:
        raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {method!r}") from None
    return fn(frame, size)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, restored after (None: untouched).

    Why: a resize running next to ffmpeg's decode threads on the same cores should not fork an
    OpenMP team per frame. Measured on 2 cores (720p, 60 frames): 2 intra-op threads cost 4.1
    CPU s in the resize thread where 1 costs 1.5, for no gain in wall time. The setting is
    process-wide in torch (there is no per-thread one), hence the scope: nothing else in this
    process should run torch ops while a video is being sampled."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
