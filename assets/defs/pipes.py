"""A Pipes message reader that never decodes a half-written message.

Dagster's file message reader tails the messages file with ``readline`` and json-decodes what
it returns; at the end of the file ``readline`` returns whatever part of a line has been
written so far. A training run's materialisation message carries its plots (hundreds of KB of
base64 PNG), which the external process writes in several chunks, so the reader can catch it
half-written: the decode fails, the reader thread dies, and the run ends without its
materialisation metadata (seen in this project's suite: ``Unterminated string`` in the reader
thread, then ``KeyError: 'checkpoint'`` on the asset's metadata). This reader keeps a partial
line until its newline arrives.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

MESSAGES_FILE = "messages"


def whole_lines(path: str, should_stop: Callable[[], bool], poll_s: float = 0.01) -> Iterator[str]:
    """The lines appended to ``path``, each yielded once it is complete (ends in a newline).
    When ``should_stop`` is true and nothing more arrives, a last unterminated line is yielded
    as it is: the writer has finished, so it is all there will be."""
    pending = ""
    with open(path, encoding="utf-8") as stream:
        while True:
            piece = stream.readline()
            if piece:
                pending += piece
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
            elif should_stop():
                if pending.strip():
                    yield pending
                return
            else:
                time.sleep(poll_s)


class WholeLineFileMessageReader(dg.PipesFileMessageReader):
    """``PipesFileMessageReader`` reading with :func:`whole_lines`."""

    def _reader_thread(self, handler, is_resource_complete) -> None:
        try:
            for line in whole_lines(self._path, is_resource_complete.is_set):
                handler.handle_message(json.loads(line))
        except Exception:
            handler.report_pipes_framework_exception(f"{type(self).__name__} reader thread", sys.exc_info())
            raise


class WholeLineTempFileMessageReader(dg.PipesMessageReader):
    """``PipesTempFileMessageReader`` (a temporary messages file per run) with whole lines."""

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict]:
        with tempfile.TemporaryDirectory() as folder:
            with WholeLineFileMessageReader(os.path.join(folder, MESSAGES_FILE)).read_messages(handler) as params:
                yield params

    def no_messages_debug_text(self) -> str:
        return "Attempted to read messages from a local temporary file."


def subprocess_client() -> dg.PipesSubprocessClient:
    """The project's Pipes client for ``python -m training`` and lmms-eval runs."""
    return dg.PipesSubprocessClient(message_reader=WholeLineTempFileMessageReader())
