"""The frame resize: torchvision's tensor bicubic antialias (qwen-vl-utils' pixels), checked
against an antialiased bicubic written out here, and PIL bicubic as the option."""

import numpy as np
import pytest
import torch
from PIL import Image

from assets.video.plan import RESIZE_METHODS, VideoSamplingConfig
from assets.video.resize import RESIZERS, resize_frame, resize_pil, resize_torch, torch_threads


def keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel; a = -0.5 is the one PIL and torch's antialias path use."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def aa_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(source index, weight) per output sample and tap of an antialiased bicubic resize.

    Output sample i is centred at (i + 0.5) * scale in the source; on a downscale the kernel is
    stretched by the scale (support 2 * scale), so every source pixel under it contributes;
    weights are normalised to sum to 1. Coordinates in float32, as torch computes them for a
    float32 image; the sums below are float64."""
    f = np.float32
    scale = f(n_in) / f(n_out)
    stretch = max(scale, f(1))
    support = f(2) * stretch
    taps = int(np.ceil(support)) * 2 + 1
    idx = np.zeros((n_out, taps), np.int64)
    wts = np.zeros((n_out, taps), np.float64)
    for i in range(n_out):
        centre = f(scale * f(i + f(0.5)))
        lo = max(int(centre - support + f(0.5)), 0)
        hi = min(int(centre + support + f(0.5)), n_in)
        j = np.arange(lo, hi)
        w = keys_cubic(((j + f(0.5) - centre) / stretch).astype(f).astype(np.float64))
        idx[i, : hi - lo], wts[i, : hi - lo] = j, w / w.sum()
    return idx, wts


def reference_resize(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """float64 antialiased bicubic of an (H, W, 3) image: width pass, then height pass."""
    x = frame.astype(np.float64)
    if w != x.shape[1]:
        idx, wts = aa_taps(x.shape[1], w)
        x = np.einsum("hotc,ot->hoc", x[:, idx, :], wts)
    if h != x.shape[0]:
        idx, wts = aa_taps(x.shape[0], h)
        x = np.einsum("otwc,ot->owc", x[idx, :, :], wts)
    return x


def card(h: int, w: int, seed: int) -> np.ndarray:
    """Noise over a gradient with hard-edged blocks: overshoot at the edges exercises the clamp."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = (x * 255 / max(w - 1, 1))[..., None] * np.array([1.0, 0.5, 0.2]) + rng.normal(0, 40, (h, w, 3))
    img[h // 4 : h // 2, w // 3 : w // 2] = [255, 0, 255]
    img[h // 2 :, : w // 5] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


SIZES = [  # (source h, w) -> (target h, w): odd sizes, downscales, upscales, mixed
    ((37, 53), (28, 56)),
    ((101, 77), (19, 23)),
    ((9, 11), (40, 33)),
    ((360, 640), (364, 644)),
    ((250, 142), (252, 140)),
    ((1080, 1920), (560, 1008)),
    ((121, 400), (121, 84)),  # width only
    ((77, 64), (28, 64)),  # height only
]


@pytest.mark.parametrize("src,dst", SIZES)
def test_torch_resize_equals_an_antialiased_bicubic_written_out(src, dst):
    frame = card(*src, seed=src[0])
    got = resize_torch(frame, dst)
    assert got.dtype == np.uint8 and got.shape == (*dst, 3) and got.flags.c_contiguous
    ref = reference_resize(frame, *dst)
    want = np.rint(np.clip(ref, 0, 255))
    # torch sums in float32 (off by at most ~1.2e-4 here): only a value that close to a .5
    # boundary may round the other way
    tie = np.abs(np.abs(ref - np.floor(ref)) - 0.5) < 2.5e-4
    diff = np.abs(got.astype(np.float64) - want)
    assert diff[~tie].max() == 0
    assert diff.max() <= 1 and tie.mean() < 2e-3
    assert ((ref < 0) | (ref > 255)).any()  # edges overshoot: the clamp is exercised


def test_torch_resize_is_per_frame_what_torchvision_does_on_the_whole_video():
    # qwen-vl-utils resizes the (T, C, H, W) uint8 video at once: float32, interpolate, clamp, round
    video = np.stack([card(90, 160, seed=s) for s in range(3)])
    x = torch.from_numpy(video).permute(0, 3, 1, 2).to(torch.float32)
    y = torch.nn.functional.interpolate(x, size=(56, 84), mode="bicubic", align_corners=False, antialias=True)
    batch = torch.round(y.clamp(min=0, max=255)).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for frame, want in zip(video, batch):
        assert np.array_equal(resize_torch(frame, (56, 84)), want)


def test_same_size_and_read_only_frames():
    frame = card(56, 84, seed=1)
    assert resize_torch(frame, (56, 84)) is frame  # torchvision returns an unchanged size as is
    frame.flags.writeable = False
    assert np.array_equal(resize_torch(frame, (28, 28)), resize_torch(frame.copy(), (28, 28)))


def test_pil_option_is_pil_bicubic_and_differs_from_torch_on_detail():
    frame = card(360, 640, seed=2)
    pil = resize_frame(frame, (364, 644), "pil")
    assert np.array_equal(pil, np.asarray(Image.fromarray(frame).resize((644, 364), Image.BICUBIC)))
    diff = np.abs(pil.astype(int) - resize_frame(frame, (364, 644)).astype(int))
    assert diff.max() > 2 and 0 < (diff > 0).mean() < 0.5  # PIL rounds to uint8 between its two passes


def test_resize_methods_are_one_list():
    assert tuple(RESIZERS) == RESIZE_METHODS == ("torch", "pil")
    assert RESIZERS["torch"] is resize_torch and RESIZERS["pil"] is resize_pil
    with pytest.raises(ValueError, match="resize must be one of"):
        resize_frame(card(8, 8, 0), (4, 4), "lanczos")
    with pytest.raises(ValueError, match="resize must be one of"):
        VideoSamplingConfig(resize="lanczos")
    assert VideoSamplingConfig().resize == "torch"
    assert VideoSamplingConfig().key() != VideoSamplingConfig(resize="pil").key()


def test_torch_threads_is_scoped():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
