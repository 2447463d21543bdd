"""``python -m eval.lmms_pipes``: one lmms-eval run, launched and reported through Dagster Pipes.

The Dagster asset (``assets.defs.evaluation``, ``eval/lmms_eval``) starts this with
``PipesSubprocessClient`` and these extras: ``checkpoint``, ``output_dir``, ``tasks``,
``batch_size``, ``limit``, ``model_args``, ``model`` (leaderboard id), ``method`` (label),
``repo_root``, ``include_path`` (folder of task files, e.g. the local forms of the tasks).
Without CUDA the model runs on the CPU (``device=cpu,device_map=cpu`` added to the model
arguments); Hugging Face caches go under the output folder. It runs lmms-eval in a child process with our model plugin registered, streams
its last lines to the Dagster log, parses the results file into a leaderboard row
(``leaderboard_row.json`` beside the results) and reports the materialisation with the scores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from assets.contract.atomic import write_json
from assets.contract.console import quiet_console
from eval import lmms


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    quiet_console()  # GIRAFFE_VERBOSE from the launching process

    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        out_dir = Path(extras["output_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = lmms.command(
            extras["checkpoint"],
            out_dir,
            tasks=extras.get("tasks") or lmms.DEFAULT_TASKS,
            batch_size=int(extras.get("batch_size") or 1),
            limit=extras.get("limit"),
            model_args=lmms.device_args(extras.get("model_args") or ""),
            include_path=extras.get("include_path"),
        )
        pipes.log.info("running: " + " ".join(cmd))
        env = lmms.environment(extras["repo_root"], cache_dir=out_dir / ".cache")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        if proc.returncode != 0:
            pipes.log.error(f"lmms-eval exited with {proc.returncode}:\n{tail}")
            raise RuntimeError(f"lmms-eval failed (exit {proc.returncode}); see the log")
        pipes.log.info(tail)
        results = lmms.find_results(out_dir)
        parsed = lmms.parse_results(results)
        row = lmms.leaderboard_row(extras["model"], extras.get("method") or "", parsed)
        write_json(out_dir / "leaderboard_row.json", row, indent=1)
        pipes.report_asset_materialization(
            metadata={
                "results_file": {"raw_value": str(results), "type": "path"},
                "tasks": {"raw_value": ", ".join(parsed["tasks"]), "type": "text"},
                "scores": {"raw_value": {k: v for k, v in row.items() if v is not None}, "type": "json"},
                "lmms_eval_version": {"raw_value": str(parsed.get("lmms_eval_version")), "type": "text"},
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
