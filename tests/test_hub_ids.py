"""Real published formats: benchmark repos follow the current lmms-eval task files, and every
hub repo id can be replaced (a transferred repo, a mirror) without touching the code."""

from __future__ import annotations

import pytest

from assets.sources.hub import HubSettings, parse_hub_ids, with_hub_id
from assets.sources.registry import get_source
from eval.benchmarks import BENCHMARKS

# dataset_path of lmms-eval's tasks/videomme/videomme.yaml, tasks/longvideobench/
# longvideobench_val_v.yaml, tasks/mme/mme.yaml, tasks/mmbench/_default_template_mmbench_en_yaml
LMMS_EVAL = {
    "videomme": "lmms-eval/Video-MME",
    "longvideobench": "longvideobench/LongVideoBench",
    "mme": "lmms-lab-encoder/MME",
    "mmbench": "lmms-lab-encoder/MMBench",
}


def test_benchmarks_follow_the_current_lmms_eval_task_files():
    by_name = {b.name: b.hub_id for b in BENCHMARKS}
    assert {k: by_name[k] for k in LMMS_EVAL} == LMMS_EVAL


def test_hub_ids_are_parsed_and_replace_the_registry_in_hub_mode_only():
    pairs = parse_hub_ids(" videomme=lmms-lab/Video-MME , mlvu=mirror/MLVU,")
    assert pairs == (("videomme", "lmms-lab/Video-MME"), ("mlvu", "mirror/MLVU"))
    spec = get_source("mlvu")
    assert with_hub_id(spec, HubSettings(mode="hub", hub_ids=pairs)).hub_id == "mirror/MLVU"
    assert with_hub_id(spec, HubSettings(mode="embedded", hub_ids=pairs)) is spec  # the sample's layout is keyed by the default
    bench = next(b for b in BENCHMARKS if b.name == "videomme")
    assert with_hub_id(bench, HubSettings(mode="hub", hub_ids=pairs)).hub_id == "lmms-lab/Video-MME"
    with pytest.raises(ValueError, match="'mlvu' is not name=org/repo"):
        parse_hub_ids("mlvu")


def test_the_hub_resource_reads_giraffe_hub_ids(monkeypatch):
    from assets.defs.resources import default_resources

    monkeypatch.setenv("GIRAFFE_HUB_IDS", "mme=org/MME-mirror")
    hub = default_resources()["hub"]
    assert hub.settings().hub_id_for("mme", "lmms-lab-encoder/MME") == "lmms-lab-encoder/MME"  # embedded mode
    monkeypatch.setenv("GIRAFFE_SOURCES_MODE", "hub")
    assert default_resources()["hub"].settings().hub_id_for("mme", "lmms-lab-encoder/MME") == "org/MME-mirror"
