"""``giraffe_qwen2_vl``: lmms-eval's Qwen2-VL model with the checkpoint's position method.

lmms-eval's ``Qwen2_VL`` loads the weights with a plain ``from_pretrained``, which keeps the
method recorded in ``config.giraffe_position_method`` but not its behaviour (new frequencies,
V2PE positions). This subclass re-applies it right after loading, exactly as
``training.positions.apply.load_with_position_method`` does, so M-RoPE++ / V2PE / PI / NTK /
YaRN checkpoints are scored with the positions they were trained with. Everything else
(prompting, frame sampling, batching) is lmms-eval's own.
"""

from __future__ import annotations

try:  # lmms-eval >= 0.4 keeps "simple" models in a subpackage
    from lmms_eval.models.simple.qwen2_vl import Qwen2_VL
except ImportError:  # lmms-eval 0.3
    from lmms_eval.models.qwen2_vl import Qwen2_VL

from training.positions.apply import apply_position_method, read_position_method


class GiraffeQwen2VL(Qwen2_VL):
    def __init__(self, pretrained: str, **kwargs) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        self.giraffe_position_method = read_position_method(self.model.config)
        if self.giraffe_position_method is not None:
            apply_position_method(self.model, self.giraffe_position_method)


try:  # also the decorator registry, where the installed version has one
    from lmms_eval.api.registry import register_model

    register_model("giraffe_qwen2_vl")(GiraffeQwen2VL)
except Exception:  # noqa: BLE001 - already registered, or a release without the legacy registry
    pass
