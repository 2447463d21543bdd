"""A quiet console by default: library progress bars and known-harmless warnings off.

``datasets``, ``huggingface_hub`` and ``transformers`` draw a progress bar for every split they
generate, every parquet they write and every model they load (the demo loads one 25 times), and
a few libraries warn about things that are true and harmless here. On a console they bury the
lines that matter; our own stages report progress with :mod:`assets.contract.progress` instead.

:func:`quiet_console` is called first thing by the ``giraffe`` CLI and by the processes it starts
(the training job, the lmms-eval bridge). The choice travels in ``GIRAFFE_VERBOSE`` (``1`` brings
everything back: ``giraffe demo --verbose``), and the progress-bar switches are environment
variables too, so a child process inherits both. A variable the user set is never overridden.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Mapping

VERBOSE_ENV = "GIRAFFE_VERBOSE"

# Read at import by datasets / huggingface_hub (and transformers, through huggingface_hub).
PROGRESS_BAR_ENV: Mapping[str, str] = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

# Python warnings that say something true and harmless for this project, by message. Each is
# listed on purpose (never a whole category), so a new warning still shows.
HARMLESS_WARNINGS: Mapping[str, str] = {
    # The checkpoint asset's stage mapping; Dagster has no stable alternative for it (asset docs).
    r"Class `MultiToSingleDimensionPartitionMapping` is currently in beta": "dagster",
    # Raised by Dagster's own Pipes client on every launch, not by our code.
    r"Function `PipesMessageReader\.expected_writer_count` is currently in preview": "dagster",
}

# Log records (logger name -> message patterns) that are harmless: DeepSpeed warns on every
# import on a host without a GPU that it falls back to the CPU, which is the point on such a host.
HARMLESS_LOG_RECORDS: Mapping[str, tuple[str, ...]] = {
    "DeepSpeed": (r"Setting accelerator to CPU",),
}


def verbose_from_env(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _DropMatching(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = tuple(re.compile(p) for p in patterns)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_console(verbose: bool | None = None) -> bool:
    """Apply the quiet defaults unless ``verbose`` (None: read ``GIRAFFE_VERBOSE``); record the
    choice in the environment for child processes. Idempotent. Returns ``verbose``."""
    if verbose is None:
        verbose = verbose_from_env()
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        return True
    for name, value in PROGRESS_BAR_ENV.items():
        os.environ.setdefault(name, value)
    _disable_imported_progress_bars()
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, patterns in HARMLESS_LOG_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) for f in logger.filters):
            logger.addFilter(_DropMatching(patterns))
    return False


def _disable_imported_progress_bars() -> None:
    """The libraries read the variables at import: switch off those imported already."""
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") != "1":
        return  # the user asked for them
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules and os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS") == "1":
        from datasets.utils.tqdm import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()
