"""Models this plugin adds to lmms-eval: name -> class in ``eval.lmms_plugin.models.<name>``.

lmms-eval (0.3 and the 0.4+ registry alike) resolves ``<plugin>.models.<name>.<Class>``; the
class module imports lmms-eval itself, so nothing here does."""

AVAILABLE_MODELS = {"giraffe_qwen2_vl": "GiraffeQwen2VL"}
