"""``giraffe video-plan``: JSON for a readable video, status 2 and one line for a bad one."""

import json

import pytest

from assets.sources.embedded.media import encode_video
from pipelines.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return encode_video(tmp_path_factory.mktemp("cli") / "c.mp4", seconds=3, fps=25, size=(320, 240))


def test_video_plan_prints_the_plan(clip, capsys):
    assert main(["video-plan", str(clip)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["video_fps"] == 25.0 and plan["total_frames"] == 75 and plan["duration"] == 3.0
    assert plan["indices"] == [0, 15, 30, 44, 59, 74] and len(plan["timestamps"]) == 6
    # 320x240 is below VIDEO_MIN_PIXELS (128 tokens): scaled up to 280x392
    assert plan["sizes"][0] == [280, 392] and plan["grids"] == [[3, 20, 28]]
    assert plan["visual_tokens"] == 3 * 10 * 14


def test_video_plan_options(clip, capsys):
    assert main(["video-plan", str(clip), "--fps", "1", "--max-pixels", str(64 * 784), "--hybrid", "2,40,4"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["indices"]) == 4 and plan["hybrid"] == [2, 40, 4.0]
    assert len(plan["grids"]) == 2 and plan["grids"][0][0] == 1  # one hi-res patch, one low-res patch
    assert plan["visual_tokens"] < 2 * 40


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 50])
def test_unreadable_file_exits_2_with_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    assert main(["video-plan", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("giraffe video-plan: ") and "\n" not in err
