"""A quiet console: progress lines at a bearable cadence (assets.contract.progress), library bars
and known-harmless warnings off unless verbose (assets.contract.console), and the CLI's compact
Dagster log lines (pipelines.console_log)."""

from __future__ import annotations

import logging
import re
import warnings

import dagster as dg
import pytest

from assets.contract.console import PROGRESS_BAR_ENV, VERBOSE_ENV, quiet_console
from assets.contract.progress import Progress, duration, rate


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_writes_at_each_tenth_but_not_more_than_every_min_seconds():
    clock, lines = Clock(), []
    p = Progress("eval/mme on mrope_pp/8k", 100, lines.append, min_seconds=5, max_seconds=60, clock=clock)
    clock.t = 1
    p.update(10)  # 10 % crossed, but only 1 s since the start: nothing yet
    clock.t = 6
    p.update(10)  # 20 %, 6 s: due
    clock.t = 7
    p.update(5)  # 25 %: no new tenth
    clock.t = 8
    p.update(5)  # 30 % but 2 s after the last line: skipped
    clock.t = 70
    p.update(1)  # 31 %: no tenth, but 64 s since the last line
    clock.t = 80
    p.update(69)  # done: the closing line comes from close()
    p.close()
    p.close()  # once
    assert lines == [
        "eval/mme on mrope_pp/8k: 20/100 items (20%), 3.3 items/s, ETA 24 s",
        "eval/mme on mrope_pp/8k: 31/100 items (31%), 2.3 s/item, ETA 2 min 36 s",
        "eval/mme on mrope_pp/8k: 100 items in 1 min 20 s, 1.2 items/s",
    ]


def test_a_short_loop_stays_silent_and_a_partial_one_says_so():
    clock, lines = Clock(), []
    with Progress("chatml/mmdu", 3, lines.append, clock=clock) as p:
        clock.t = 0.5
        p.update(3)
    assert lines == [] and p.done == 3
    clock.t = 100
    p = Progress("video_frames", 4, lines.append, unit="videos", clock=clock, min_seconds=5)
    clock.t = 120
    p.update(1)
    p.close()  # stopped early (an error upstream): the line says how far it got
    assert lines == ["video_frames: 1/4 videos (25%), 20.0 s/video, ETA 1 min 00 s",
                     "video_frames: 1/4 videos in 20 s, 20.0 s/video"]


def test_progress_with_no_total_and_no_sink():
    p = Progress("token_counts", 0, None)
    p.update(0)
    p.close()
    assert p.lines == 0
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress("x", -1, None)


def test_duration_and_rate_read_well():
    assert [duration(s) for s in (0.42, 42.4, 185, 7620)] == ["0.4 s", "42 s", "3 min 05 s", "2 h 07 min"]
    assert rate(1500, 2, "rows") == "750 rows/s"
    assert rate(3, 2, "items") == "1.5 items/s"
    assert rate(1, 12, "videos") == "12.0 s/video"


# -- quiet libraries ------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*PROGRESS_BAR_ENV, VERBOSE_ENV):
        monkeypatch.delenv(name, raising=False)


def test_quiet_console_turns_bars_and_known_warnings_off(clean_env, monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert quiet_console(False) is False
        warnings.warn("Class `MultiToSingleDimensionPartitionMapping` is currently in beta, and may change", UserWarning)
        warnings.warn("Function `PipesMessageReader.expected_writer_count` is currently in preview", UserWarning)
        warnings.warn("Class `SomethingElse` is currently in beta", UserWarning)
    assert [str(w.message) for w in caught] == ["Class `SomethingElse` is currently in beta"]
    import os

    assert {k: os.environ[k] for k in PROGRESS_BAR_ENV} == dict(PROGRESS_BAR_ENV) and os.environ[VERBOSE_ENV] == "0"

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    ds = logging.getLogger("DeepSpeed")
    ds.addHandler(handler)
    try:
        ds.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
        ds.warning("ZeRO stage 3 is slow on CPU")
    finally:
        ds.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["ZeRO stage 3 is slow on CPU"]


def test_verbose_keeps_everything_and_tells_child_processes(clean_env, monkeypatch):
    import os

    assert quiet_console(True) is True
    assert os.environ[VERBOSE_ENV] == "1"
    assert not any(k in os.environ for k in PROGRESS_BAR_ENV)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert quiet_console() is True  # a child process reads the parent's choice


def test_a_users_own_setting_wins(clean_env, monkeypatch):
    import os

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    quiet_console(False)
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"


# -- compact Dagster console lines ----------------------------------------------------------------


@dg.asset(key=["raw", "tiny"])
def tiny(context):
    context.log.info("42 rows")
    context.log.warning("one row had no media")


@dg.asset(key=["broken"], deps=[tiny])
def broken(context):
    raise ValueError("the file is not parquet\nsecond line of detail")


def test_the_cli_logger_writes_short_lines(capfd):
    from pipelines.console_log import with_compact_console

    defs = dg.Definitions(assets=[tiny, broken], jobs=[dg.define_asset_job("j", selection=dg.AssetSelection.assets(tiny, broken))])
    job = with_compact_console(defs.resolve_job_def("j"))
    result = job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}}, raise_on_error=False
    )
    assert not result.success
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    time = r"\d\d:\d\d:\d\d"
    assert re.fullmatch(rf"{time} raw/tiny: 42 rows", lines[0]), lines
    assert re.fullmatch(rf"{time} WARNING raw/tiny: one row had no media", lines[1]), lines
    failure = [line for line in lines if " ERROR broken: " in line]
    assert failure and "ValueError: the file is not parquet" in failure[0]
    assert not any("second line of detail" in line for line in lines)
    assert max(len(line) for line in lines if "ERROR" not in line) < 60


def test_a_stage_with_its_own_summary_gets_no_closing_line():
    clock, lines = Clock(), []
    p = Progress("video_frames", 10, lines.append, unit="videos", closing_line=False, clock=clock)
    clock.t = 12
    p.update(5)
    clock.t = 30
    p.update(5)
    p.close()
    assert lines == ["video_frames: 5/10 videos (50%), 2.4 s/video, ETA 12 s"]
