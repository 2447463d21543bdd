"""Task folder of the plugin (lmms-eval adds ``<plugin>.tasks`` to its include path for every
entry of ``LMMS_EVAL_PLUGINS``, so the package must exist). It ships no task files: the local
forms of lmms-eval's tasks are written per run by ``eval.lmms.write_local_tasks``, next to the
data they point at, and passed with ``--include_path``."""
