"""lmms-eval plugin package: ``LMMS_EVAL_PLUGINS=eval.lmms_plugin`` makes lmms-eval import
``eval.lmms_plugin.models`` and register every entry of its ``AVAILABLE_MODELS``."""
