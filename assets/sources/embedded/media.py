"""Real media for the embedded sample: PIL-drawn scenes and ffmpeg-encoded videos."""

from __future__ import annotations

import io
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from assets.contract.atomic import atomic_path
from assets.video.decode import ffmpeg_exe

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
}
_BACKGROUNDS = ((245, 245, 240), (225, 235, 245), (235, 245, 225), (250, 235, 225))


@dataclass(frozen=True)
class DrawnObject:
    shape: str
    colour: str
    box: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def draw_scene(rng: random.Random, size: tuple[int, int], n_objects: int) -> tuple[Image.Image, list[DrawnObject]]:
    """An image with ``n_objects`` coloured shapes; returns the objects for captions and QA."""
    w, h = size
    img = Image.new("RGB", size, rng.choice(_BACKGROUNDS))
    draw = ImageDraw.Draw(img)
    objects = []
    for _ in range(n_objects):
        s = rng.randint(min(w, h) // 8, min(w, h) // 3)
        x, y = rng.randint(0, w - s), rng.randint(0, h - s)
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        box = (x, y, x + s, y + s)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(x + s // 2, y), (x, y + s), (x + s, y + s)], fill=COLOURS[colour])
        objects.append(DrawnObject(shape, colour, box))
    return img, objects


def where(obj: DrawnObject, size: tuple[int, int]) -> str:
    cx = (obj.box[0] + obj.box[2]) / 2 / size[0]
    cy = (obj.box[1] + obj.box[3]) / 2 / size[1]
    vertical = "top" if cy < 0.4 else "bottom" if cy > 0.6 else "middle"
    horizontal = "left" if cx < 0.4 else "right" if cx > 0.6 else "centre"
    return f"{vertical} {horizontal}" if vertical != "middle" or horizontal != "centre" else "centre"


def caption(objects: list[DrawnObject], size: tuple[int, int]) -> str:
    parts = [f"a {o.name} in the {where(o, size)}" for o in objects]
    if len(parts) == 1:
        return f"The image shows {parts[0]}."
    return "The image shows " + ", ".join(parts[:-1]) + f" and {parts[-1]}."


def save_image(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


# Synthetic sources of ffmpeg's lavfi; each video also gets its own hue so frames differ.
_PATTERNS = ("testsrc2", "testsrc", "smptehdbars", "rgbtestsrc")


def encode_video(
    path: Path,
    *,
    seconds: float,
    fps: float,
    size: tuple[int, int] = (320, 240),
    pattern: int = 0,
    hue: int = 0,
) -> Path:
    """Encode an H.264 mp4 of a moving test pattern with the bundled ffmpeg binary, through a
    temporary sibling: callers reuse a clip that exists, so a killed encode must not leave a
    truncated mp4 under the final name."""
    source = f"{_PATTERNS[pattern % len(_PATTERNS)]}=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}"
    with atomic_path(path) as tmp:
        cmd = [
            ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source,
            "-vf", f"hue=h={hue},format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
            "-crf", "32", "-g", "30", "-f", "mp4", str(tmp),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to encode {path.name}: {proc.stderr.strip()[-500:]}")
    return path
