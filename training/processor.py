"""Building and loading a Qwen2-VL processor on machines without torchvision.

transformers' ``Qwen2VLProcessor`` checks each sub-processor's class by name, and without
torchvision the video-processor classes are placeholders, so construction fails before any
video is touched. Our video path (decode, resize, patchify) is our own code anyway, so we
keep the stock processor class and only teach its class lookup where the real classes live.
"""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

from assets.contract.chat_template import qwen2_vl_chat_template


class _Unavailable:
    """Stands for an optional backend class that is not installed (nothing is an instance)."""


class GiraffeQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` whose sub-processor class check works without torchvision."""

    @staticmethod
    def get_possibly_dynamic_module(module_name: str):
        # The base video classes import without torchvision, but transformers exposes them at
        # top level as placeholders (5.17: BaseVideoProcessor, 5.23: VideoProcessorMixin).
        if module_name in ("VideoProcessorMixin", "BaseVideoProcessor"):
            from transformers import video_processing_utils

            return getattr(video_processing_utils, module_name)
        try:
            return ProcessorMixin.get_possibly_dynamic_module(module_name)
        except (AttributeError, ValueError):
            return _Unavailable


def build_processor(tokenizer, image_processor=None) -> Qwen2VLProcessor:
    """Qwen2-VL processor around ``tokenizer`` with the PIL image processor (no torchvision)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.video_processing_utils import BaseVideoProcessor

    return GiraffeQwen2VLProcessor(
        image_processor=image_processor or Qwen2VLImageProcessorPil(),
        tokenizer=tokenizer,
        video_processor=BaseVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2),
        chat_template=qwen2_vl_chat_template(),
    )


def load_processor(path: str | Path) -> Qwen2VLProcessor:
    """The stock ``AutoProcessor`` where it loads (torchvision present), else ours."""
    from transformers import AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(path)
        if isinstance(processor, ProcessorMixin):
            return processor
    except (ImportError, AttributeError, ValueError, TypeError, OSError):
        pass
    # Without torchvision AutoProcessor falls back to the bare tokenizer: assemble it ourselves.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return build_processor(AutoTokenizer.from_pretrained(path), Qwen2VLImageProcessorPil.from_pretrained(path))
