"""The ``giraffe`` CLI refuses a bad request before any work: one line on stderr, exit status 2,
nothing written; and its help shows examples, defaults, the version and the configured recipes."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from assets.sources.registry import SOURCES
from pipelines.cli import JOB_NAMES, build_parser, main

COMMANDS = ("demo", "sources", "ui", "datasets", "rope", "video-plan", "pack", "train")


def refused(argv: list[str], capsys) -> str:
    """The one stderr line of a refused request (asserting exit 2, one line, nothing on stdout)."""
    code = main(argv)
    out = capsys.readouterr()
    assert code == 2, (argv, out.out, out.err)
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    return lines[0]


def test_job_names_match_the_definitions():
    from pipelines.jobs import all_jobs

    assert JOB_NAMES == tuple(j.name for j in all_jobs)


# -- refusals: the exact line each request gets -----------------------------------------------------


@pytest.fixture
def base_root(tmp_path):
    """A data root with a base model folder (config.json) but no mixture shard yet."""
    (tmp_path / "data" / "model" / "base").mkdir(parents=True)
    # the base's original context L_V, which the recipes' M-RoPE++ extends from (its target only in the recipe)
    (tmp_path / "data" / "model" / "base" / "config.json").write_text('{"text_config": {"max_position_embeddings": 256}}')
    return tmp_path / "data"


def test_demo_refuses_an_unknown_job(capsys, tmp_path):
    line = refused(["demo", "--job", "nope", "--dagster-home", str(tmp_path / "home")], capsys)
    choices = ", ".join(repr(j) for j in JOB_NAMES)
    assert line == f"giraffe demo: --job: invalid choice: 'nope' (choose from {choices})"
    assert not (tmp_path / "home").exists()


def test_demo_refuses_a_data_root_that_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    line = refused(["demo", "--data-root", str(tmp_path / "f")], capsys)
    assert line == f"giraffe demo: --data-root: {tmp_path / 'f'} exists and is not a folder"


def test_rope_refuses_a_plot_in_a_missing_folder_before_computing(capsys):
    assert refused(["rope", "--plot", "/nonexistent/x.png"], capsys) == (
        "giraffe rope: --plot: folder /nonexistent does not exist"
    )


def test_rope_refuses_a_plot_that_is_not_png(capsys, tmp_path):
    line = refused(["rope", "--plot", str(tmp_path / "x.jpg")], capsys)
    assert line == f"giraffe rope: --plot: wants a .png file, got {tmp_path / 'x.jpg'}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--fps", "0"], "--fps: must be a number > 0, got 0"),
        (["--fps", "-1"], "--fps: must be a number > 0, got -1"),
        (["--fps", "two"], "--fps: must be a number, got 'two'"),
        (["--max-pixels", "0"], "--max-pixels: must be an integer >= 1, got 0"),
        (["--hybrid-min-frames", "-5"], "--hybrid-min-frames: must be an integer >= 0, got -5"),
    ],
)
def test_video_plan_refuses_bad_numbers(capsys, argv, message):
    assert refused(["video-plan", "clip.mp4", *argv], capsys) == f"giraffe video-plan: {message}"


def test_pack_and_ui_refuse_bad_numbers(capsys):
    assert refused(["pack", "x.parquet", "--capacity", "0"], capsys) == (
        "giraffe pack: --capacity: must be an integer >= 1, got 0"
    )
    assert refused(["ui", "--port", "70000"], capsys) == "giraffe ui: --port: must be a TCP port (1-65535), got 70000"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipe", "nope"], "unknown recipe 'nope'; configured: mrope_pp (8k, 32k), v2pe (8k, 32k)"),
        (["--recipe", "mrope_pp", "--stages", "8k,999k"], "stage '999k' is not a stage of recipe 'mrope_pp' (8k, 32k)"),
        (["--recipe", "mrope_pp", "--stages", "32k,8k"], "--stages 32k,8k is out of order: recipe 'mrope_pp' trains 8k -> 32k"),
        (["--recipe", "mrope_pp", "--stages", "8k,8k"], "stage '8k' is listed twice in --stages 8k,8k"),
        (["--recipe", "mrope_pp", "--stages", "8k,,32k"], "--stages '8k,,32k' has an empty stage name"),
        (["--recipe", "mrope_pp", "--nproc", "0"], "--nproc: must be an integer >= 1, got 0"),
        (["--recipe", "mrope_pp", "--nproc", "2"],
         "--launcher python --nproc 2: the python launcher runs one process; use torchrun or deepspeed for nproc > 1"),
        (["--recipe", "mrope_pp", "--launcher", "mpirun"],
         "--launcher: invalid choice: 'mpirun' (choose from 'python', 'torchrun', 'deepspeed')"),
        (["--recipe", "mrope_pp", "--launcher", "torchrun", "--nproc", "2", "--sequence-parallel-size", "2"],
         "--sequence-parallel-size 2 (Ulysses) needs --launcher deepspeed"),
        (["--recipe", "mrope_pp", "--launcher", "deepspeed", "--nproc", "3", "--sequence-parallel-size", "2"],
         "--nproc 3 is not a multiple of --sequence-parallel-size 2"),
        (["--recipe", "mrope_pp", "--steps", "0"], "--steps: must be an integer >= 1, got 0"),
        (["--recipe", "mrope_pp", "--save-every", "-1"], "--save-every: must be an integer >= 0, got -1"),
        ([], "the following arguments are required: --recipe"),
    ],
)
def test_train_refuses_a_bad_request_before_anything_runs(capsys, tmp_path, base_root, argv, message):
    home = tmp_path / "home"
    line = refused(["train", *argv, "--data-root", str(base_root), "--dagster-home", str(home)], capsys)
    assert line == f"giraffe train: {message}"
    assert not home.exists()  # no instance prepared, nothing launched
    assert sorted(p.name for p in base_root.iterdir()) == ["model"]


def test_train_checks_the_first_stage_plan_and_later_shards(capsys, tmp_path, base_root, write_mixture):
    home = tmp_path / "home"
    args = ["train", "--recipe", "mrope_pp", "--data-root", str(base_root), "--dagster-home", str(home)]
    missing_8k = base_root / "etvlm_mixture" / "8k" / "mixture.parquet"
    assert refused(args, capsys) == (
        f"giraffe train: the mixture shard for stage '8k' is missing at {missing_8k}: materialise etvlm_mixture 8k first"
    )
    assert refused([*args, "--stages", "32k"], capsys) == (
        "giraffe train: stage '32k' of recipe 'mrope_pp' starts from stage '8k', whose checkpoint is missing at "
        f"{base_root / 'checkpoints' / 'mrope_pp' / '8k' / 'final'}: materialise checkpoint mrope_pp|8k first"
    )
    # 8k's shard exists (a file is enough for this check: its contents are the trainer's business);
    # 32k's does not, which would only fail after 8k had trained: refused now.
    write_mixture(missing_8k)
    missing_32k = base_root / "etvlm_mixture" / "32k" / "mixture.parquet"
    assert refused(args, capsys) == (
        f"giraffe train: the mixture shard for stage '32k' is missing at {missing_32k}: materialise etvlm_mixture 32k first"
    )
    assert refused([*args, "--launcher", "deepspeed", "--deepspeed-config", str(tmp_path / "nope.json")], capsys) == (
        "giraffe train: recipe 'mrope_pp' stage '8k': invalid training config: "
        f"deepspeed config {tmp_path / 'nope.json'} does not exist"
    )
    assert not home.exists()


def test_train_refuses_recipes_it_cannot_read(capsys, tmp_path, monkeypatch):
    bad = tmp_path / "recipes.json"
    bad.write_text("[{")
    monkeypatch.setenv("GIRAFFE_RECIPES", str(bad))
    line = refused(["train", "--recipe", "x", "--dagster-home", str(tmp_path / "home")], capsys)
    assert line.startswith(f"giraffe train: cannot read the recipes (GIRAFFE_RECIPES={bad}): ")


# -- help -------------------------------------------------------------------------------------------


def _help(argv: list[str], capsys) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def test_version_comes_from_the_package_metadata(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"giraffe {version('giraffe-vlm')}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_examples_defaults_and_no_rest_markup(command, capsys):
    text = _help([command], capsys)
    assert "examples:" in text or "example:" in text
    assert "``" not in text and "`" not in text.split("examples:")[0]
    assert "%(" not in text


def test_help_shows_the_defaults(capsys):
    assert "target sampling rate, frames per second (default: 2.0)" in " ".join(_help(["video-plan"], capsys).split())
    assert "pairs per axis t,h,w (default: 16,24,24)" in " ".join(_help(["rope"], capsys).split())
    assert "(default: None)" not in _help(["train"], capsys)


def test_train_help_lists_the_configured_recipes_and_stages(capsys, tmp_path, monkeypatch):
    text = _help(["train"], capsys)
    assert "mrope_pp  stages 8k -> 32k; rope mrope++; 4 steps per stage; from model/base" in text
    assert "v2pe      stages 8k -> 32k; V2PE; 4 steps per stage; from model/base" in text
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps([{"name": "long", "method": {"rope": {"method": "yarn"}}, "stages": ["8k", "32k", "64k"]}]))
    monkeypatch.setenv("GIRAFFE_RECIPES", str(recipes))
    assert "long  stages 8k -> 32k -> 64k; rope yarn" in _help(["train"], capsys)


def test_top_level_help_lists_every_command(capsys):
    text = _help([], capsys)
    for command in COMMANDS:
        assert f"    {command}" in text
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(COMMANDS)


# -- giraffe sources --------------------------------------------------------------------------------


def test_sources_prints_a_table(capsys):
    assert main(["sources"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "category", "hub", "repository", "files", "media", "license"]
    assert set(lines[1]) == {"-", " "}
    body = lines[2 : 2 + len(SOURCES)]
    assert [line.split()[0] for line in body] == [s.name for s in SOURCES]
    assert [line.split()[1] for line in body] == [s.category for s in SOURCES]
    assert lines[-1] == f"{len(SOURCES)} source(s); giraffe sources --json for loaders, adapters and media patterns"


def test_sources_json_compact_is_one_line(capsys):
    assert main(["sources", "--json", "--compact", "--category", "video"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert [r["name"] for r in json.loads(out)] == [s.name for s in SOURCES if s.category == "video"]


def test_rope_compact_prints_one_line(capsys, tmp_path):
    png = tmp_path / "scales.png"
    assert main(["rope", "--method", "pi", "--compact", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["method"] == "pi"
    from PIL import Image

    assert Image.open(png).size[0] >= 900
    assert [p.name for p in tmp_path.iterdir()] == ["scales.png"]  # written atomically, no temp left


def test_broken_pipe_is_not_a_traceback():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        f"{sys.executable} -m pipelines.cli sources --json | head -1",
        shell=True, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )
    assert done.stdout == "[\n" and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", JOB_NAMES)
def test_every_job_s_cli_run_config_validates(name, tmp_path, monkeypatch):
    """`giraffe demo` / `giraffe train` run each job here with ``execution_config``: the config
    must fit that job's executor (shard_data names the in-process executor, which has no
    "in_process" choice; the others take Dagster's default executor, which needs it)."""
    import dagster as dg

    from pipelines.definitions import build_definitions
    from pipelines.runs import execution_config

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    job = build_definitions().resolve_job_def(name)
    config = execution_config(job)
    assert bool(config) == (job.executor_def is dg.multi_or_in_process_executor)
    dg.validate_run_config(job, config)
