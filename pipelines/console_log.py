"""The CLI's console logger: ``11:49:16 checkpoint: step 3/4 loss 8.1514 ...`` instead of Dagster's
110-128 character prefix (date, zone, logger, level, job, run id, step) on every line.

The run id and job are in the line the CLI prints before each run, and the full record is in
the event log the UI shows; on a console the time, the asset and the message are what a user
reads. Warnings and errors keep their level; a failure carries the first line of its error (the
CLI prints the rest once, at the end). ``giraffe demo`` / ``giraffe train`` give their jobs this
logger with ``JobDefinition.with_logger_defs``, so runs launched from the UI keep Dagster's own.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg

# Messages Dagster's Pipes client logs on every launch; they are not news on a console.
QUIET_MESSAGES = ("[pipes] external process successfully opened dagster pipes.",)


def error_summary(error) -> str:
    """The first line of the innermost cause of a Dagster ``SerializableErrorInfo`` (the user's
    exception, not Dagster's "Error occurred while executing op" wrapper around it)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = (getattr(error, "message", "") or "").strip().splitlines()
    return lines[0] if lines else ""


class CompactFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        where = (meta.get("step_key") or meta.get("job_name") or "dagster").replace("__", "/")
        message = str(meta.get("orig_message") or record.getMessage())
        event = meta.get("dagster_event")
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None and (detail := error_summary(error)):
            message = f"{message} {detail}"
        for prefix in (where, where.rsplit("/", 1)[-1]):  # "chatml/mmdu: mmdu: 7 rows" -> "chatml/mmdu: 7 rows"
            if message.startswith(prefix + ": "):
                message = message[len(prefix) + 2:]
                break
        level = "" if record.levelno == logging.INFO else f"{record.levelname} "
        return f"{self.formatTime(record, self.datefmt)} {level}{where}: {message}"


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        return str(meta.get("orig_message") or record.getMessage()) not in QUIET_MESSAGES


def compact_logger(level: str | int = "INFO", verbose: bool = False, stream=None) -> logging.Logger:
    logger = logging.Logger("giraffe", level=level if isinstance(level, int) else logging.getLevelName(level.upper()))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(CompactFormatter())
    if not verbose:
        handler.addFilter(_Quiet())
    logger.addHandler(handler)
    return logger


@dg.logger(
    {
        "log_level": dg.Field(str, is_required=False, default_value="INFO", description="The logger's threshold."),
        "verbose": dg.Field(bool, is_required=False, default_value=False, description="Keep Pipes handshake lines."),
    },
    description="Compact console lines for the giraffe CLI: time, asset, message.",
)
def compact_console_logger(init_context) -> logging.Logger:
    config = init_context.logger_config
    return compact_logger(config["log_level"], config["verbose"])


def with_compact_console(job: dg.JobDefinition) -> dg.JobDefinition:
    """``job`` logging through :func:`compact_console_logger` under the usual ``console`` name."""
    return job.with_logger_defs({"console": compact_console_logger})
