"""``giraffe_qwen2_vl``: lmms-eval's Qwen2-VL model with the checkpoint's position method.

lmms-eval's ``Qwen2_VL`` loads the weights with a plain ``from_pretrained``, which keeps the
method recorded in ``config.giraffe_position_method`` but not its behaviour (new frequencies,
V2PE positions). This subclass re-applies it right after loading, exactly as
``training.positions.apply.load_with_position_method`` does, so M-RoPE++ / V2PE / PI / NTK /
YaRN checkpoints are scored with the positions they were trained with. Prompting, chat
messages, frame sampling, batching, decoding and every task's scoring stay lmms-eval's own.

Two things differ from the stock wrapper, both about loading, not about what is asked:

* the processor comes from ``training.processor.load_processor``: on hosts without a working
  torchvision, ``AutoProcessor`` returns the bare tokenizer (transformers' video processor
  classes are placeholders there), which cannot process an image (``qwen_vl_utils`` still
  resizes every image to the wrapper's ``min_pixels``/``max_pixels`` from the messages), and
  its tokenizer pads on the left, as batched generation needs;
* images are handed to ``qwen_vl_utils`` as lossless PNG data URLs instead of JPEG at quality
  85, so the model sees the pixels the native runner sees (the parity test compares answers
  item by item, and a tiny model flips on compression noise);
* ``qwen_vl_utils`` imports torchvision at module level, so where torchvision cannot load the
  wrapper has no ``process_vision_info`` at all. Then :func:`image_vision_info` stands in for it
  on image inputs (the same rule: decode, RGB, ``smart_resize`` to the message's
  ``min_pixels``/``max_pixels`` with factor 28, PIL resize); a video input fails with a clear
  message (run video tasks where torchvision works).
"""

from __future__ import annotations

import base64
import io

try:  # lmms-eval >= 0.4 keeps "simple" models in a subpackage
    from lmms_eval.models.simple import qwen2_vl as stock
except ImportError:  # lmms-eval 0.3
    from lmms_eval.models import qwen2_vl as stock

from PIL import Image

from assets.video.grid import IMAGE_FACTOR, smart_resize
from training.positions.apply import apply_position_method, read_position_method
from training.processor import load_processor

Qwen2_VL = stock.Qwen2_VL
QWEN_VL_UTILS_MIN_PIXELS, QWEN_VL_UTILS_MAX_PIXELS = 4 * IMAGE_FACTOR**2, 16384 * IMAGE_FACTOR**2  # its defaults


def _image(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    text = str(source)
    if text.startswith("data:image") and "base64," in text:
        return Image.open(io.BytesIO(base64.b64decode(text.split("base64,", 1)[1])))
    return Image.open(text[7:] if text.startswith("file://") else text)


def image_vision_info(conversations, **_):
    """``(images, None)`` for the chat messages lmms-eval builds, as ``qwen_vl_utils`` returns."""
    batch = conversations if conversations and isinstance(conversations[0], list) else [conversations]
    images = []
    for messages in batch:
        for message in messages:
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                if "video" in part:
                    raise RuntimeError("video inputs need qwen_vl_utils, which needs a working torchvision")
                if "image" not in part and "image_url" not in part:
                    continue
                img = _image(part.get("image", part.get("image_url")))
                img = img.convert("RGB") if img.mode != "RGBA" else _on_white(img)
                h, w = smart_resize(
                    img.height,
                    img.width,
                    IMAGE_FACTOR,
                    part.get("min_pixels", QWEN_VL_UTILS_MIN_PIXELS),
                    part.get("max_pixels", QWEN_VL_UTILS_MAX_PIXELS),
                )
                images.append(img.resize((w, h)))
    return images or None, None


def _on_white(img: Image.Image) -> Image.Image:
    out = Image.new("RGB", img.size, (255, 255, 255))
    out.paste(img, mask=img.split()[3])
    return out


if not getattr(stock, "_has_qwen_vl", True):
    stock.process_vision_info = image_vision_info


class GiraffeQwen2VL(Qwen2_VL):
    def __init__(self, pretrained: str, **kwargs) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        # the pixel bounds are applied by qwen_vl_utils from the messages (min/max_pixels, as stock)
        self.processor = load_processor(pretrained)
        self.processor.tokenizer.padding_side = "left"  # batched generation of a decoder-only model
        self.giraffe_position_method = read_position_method(self.model.config)
        if self.giraffe_position_method is not None:
            apply_position_method(self.model, self.giraffe_position_method)

    def _encode_image_data_url(self, image) -> str:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


try:  # also the decorator registry, where the installed version has one
    from lmms_eval.api.registry import register_model

    register_model("giraffe_qwen2_vl")(GiraffeQwen2VL)
except Exception:  # noqa: BLE001 - already registered, or a release without the legacy registry
    pass
