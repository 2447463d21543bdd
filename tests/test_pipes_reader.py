"""The Pipes message reader yields a message only once it is whole: Dagster's own tail hands a
half-written line to ``json.loads`` (a training run once lost its materialisation this way)."""

import json
import threading
import time

import dagster as dg
from dagster._utils import tail_file

from assets.defs.pipes import WholeLineFileMessageReader, whole_lines

MESSAGE = json.dumps({"method": "report_asset_materialization", "params": {"metadata": {"plot": "x" * 300_000}}}) + "\n"


def _write_in_chunks(path, lines, chunk=8192, pause=0.01):
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            for i in range(0, len(line), chunk):
                f.write(line[i : i + chunk])
                f.flush()
                time.sleep(pause)


def _read_while_writing(path, reader):
    done = threading.Event()
    path.write_text("")
    writer = threading.Thread(target=lambda: (_write_in_chunks(path, [MESSAGE, '{"method": "closed"}\n', MESSAGE]), done.set()))
    writer.start()
    got = list(reader(str(path), lambda: done.is_set()))
    writer.join()
    return got


def test_whole_lines_never_yields_a_partial_message(tmp_path):
    got = _read_while_writing(tmp_path / "messages", whole_lines)
    assert got == [MESSAGE, '{"method": "closed"}\n', MESSAGE]
    assert [json.loads(line)["method"] for line in got] == ["report_asset_materialization", "closed", "report_asset_materialization"]


def test_dagsters_tail_hands_out_partial_lines_under_the_same_writer(tmp_path):
    """The baseline the reader replaces: under the same chunked writer, Dagster's ``tail_file``
    yields pieces of the 300 KB line, each of which fails to decode."""
    got = _read_while_writing(tmp_path / "messages", tail_file)
    assert "".join(got) == MESSAGE + '{"method": "closed"}\n' + MESSAGE  # same bytes...
    assert len(got) > 3  # ...in more pieces than lines


def test_a_last_unterminated_line_is_kept_once_the_writer_is_done(tmp_path):
    path = tmp_path / "messages"
    path.write_text('{"a": 1}\n{"b": 2}')
    assert list(whole_lines(str(path), lambda: True)) == ['{"a": 1}\n', '{"b": 2}']


def test_the_reader_overrides_the_hook_dagster_calls():
    """The fix replaces Dagster's private ``_reader_thread``; if a Dagster upgrade renames it,
    the override would be dead code and the race back: this fails first."""
    assert "_reader_thread" in vars(dg.PipesFileMessageReader)
    assert vars(WholeLineFileMessageReader)["_reader_thread"] is not vars(dg.PipesFileMessageReader)["_reader_thread"]
