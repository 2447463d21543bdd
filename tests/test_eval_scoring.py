"""Scoring on hand-made predictions with known answers: accuracy per split, MME's score formula
(against a re-statement of lmms-eval's aggregation), the Visual Haystack curve and effective
length on constructed curves, the leaderboard rows/regression check, and lmms-eval's results."""

import json
from collections import defaultdict

import pytest

from assets.contract.markdown import png_markdown
from eval import leaderboard as lb
from eval import lmms
from eval.benchmarks import summarize
from eval.benchmarks.mme import mme_scores
from eval.benchmarks.videomme import videomme_plot
from eval.benchmarks.visual_haystack import haystack_plot
from eval.scoring import CurvePoint, accuracy_by, effective_length, haystack_curve


def row(split, correct, group=None, status=None, n_images=1, tokens=None):
    return {
        "split": split,
        "group": group or split,
        "correct": correct,
        "status": status or ("ok" if correct else "ok"),
        "n_images": n_images,
        "n_prompt_tokens": tokens,
    }


def test_accuracy_counts_unparseable_and_errors_as_wrong():
    rows = [
        row("short", True),
        row("short", False),
        row("short", False, status="unparseable"),
        row("long", True),
        row("long", False, status="error"),
    ]
    s = summarize("videomme", rows)
    assert s["accuracy"] == pytest.approx(2 / 5)
    assert s["by_split"] == {  # rows that do not say how many choices they had: no chance
        "short": {"accuracy": pytest.approx(1 / 3), "n": 3, "correct": 1, "chance": None},
        "long": {"accuracy": 0.5, "n": 2, "correct": 1, "chance": None},
    }
    assert s["status"] == {"ok": 3, "unparseable": 1, "error": 1}
    assert s["correct"] == 2 and s["chance"] is None
    assert accuracy_by([], "split") == {}


def test_wilson_interval_and_chance():
    from eval.scoring import chance_accuracy, wilson_interval

    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(4, 4)  # all right on 4 items is still compatible with 51%
    assert lo == pytest.approx(0.5101, abs=1e-4) and hi == 1.0
    assert wilson_interval(0, 0) is None and wilson_interval(0, 3)[0] == 0.0
    rows = [{"extra": json.dumps({"n_choices": k})} for k in (2, 4, 4, 5)]
    assert chance_accuracy(rows) == pytest.approx((1 / 2 + 1 / 4 + 1 / 4 + 1 / 5) / 4)
    assert chance_accuracy(rows + [{"extra": "{}"}]) is None


def _lmms_mme_reference(rows):
    """lmms-eval ``mme_aggregate_results`` re-stated: per image acc = mean*100, acc+ = all*100,
    category = mean over images of (acc + acc+); perception/cognition sums."""
    cat2img = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cat2img[r["split"]][r["group"]].append(1.0 if r["correct"] else 0.0)
    per_cat = {}
    for cat, imgs in cat2img.items():
        total = 0.0
        for scores in imgs.values():
            assert len(scores) == 2
            total += sum(scores) / len(scores) * 100 + (sum(scores) == 2) * 100
        per_cat[cat] = total / len(imgs)
    return per_cat


def test_mme_score_formula():
    rows = [
        # existence (perception): image 1 both right, image 2 one right -> acc 75, acc+ 50 -> 125
        row("existence", True, "existence/1.png"),
        row("existence", True, "existence/1.png"),
        row("existence", True, "existence/2.png"),
        row("existence", False, "existence/2.png"),
        # count (perception): everything wrong -> 0
        row("count", False, "count/1.png"),
        row("count", False, "count/1.png"),
        # code_reasoning (cognition): one image both wrong, one both right -> acc 50, acc+ 50 -> 100
        row("code_reasoning", False, "code/1.png"),
        row("code_reasoning", False, "code/1.png"),
        row("code_reasoning", True, "code/2.png"),
        row("code_reasoning", True, "code/2.png"),
    ]
    s = mme_scores(rows)
    assert s["categories"]["existence"]["score"] == pytest.approx(125)
    assert s["categories"]["existence"]["acc"] == pytest.approx(0.75)
    assert s["categories"]["existence"]["acc_plus"] == pytest.approx(0.5)
    assert s["categories"]["count"]["score"] == 0
    assert s["categories"]["code_reasoning"]["score"] == pytest.approx(100)
    assert s["perception"] == pytest.approx(125) and s["cognition"] == pytest.approx(100)
    assert s["total_pct"] == pytest.approx(225 / 600 * 100)
    assert s["unpaired_images"] == 0
    reference = _lmms_mme_reference(rows)
    assert {c: v["score"] for c, v in s["categories"].items()} == pytest.approx(reference)


def test_mme_flags_images_without_a_pair():
    s = mme_scores([row("color", True, "c/1.png"), row("color", True, "c/2.png"), row("color", False, "c/2.png")])
    assert s["unpaired_images"] == 1
    assert s["categories"]["color"]["acc_plus"] == pytest.approx(0.5)


def curve(points):
    return [CurvePoint(n, acc, 10, 6.0 * n + 40) for n, acc in points]


@pytest.mark.parametrize(
    "points,want_n,want_last",
    [
        ([(1, 0.9), (2, 0.8), (5, 0.7), (10, 0.6), (20, 0.55), (50, 0.5)], 10, 10),  # 0.6 itself passes
        ([(1, 0.9), (2, 0.55), (5, 0.7), (10, 0.4)], 1, 5),  # a lucky pass after a failure
        ([(1, 0.5), (2, 0.7), (5, 0.4)], None, 2),  # the first count already fails
        ([(1, 0.5), (2, 0.5)], None, None),
        ([(1, 1.0), (25, 0.9), (150, 0.65)], 150, 150),  # everything passes
        ([(10, 0.59999), (1, 0.61)], 1, 1),  # unsorted input; just below the threshold fails
    ],
)
def test_effective_length_on_constructed_curves(points, want_n, want_last):
    eff = effective_length(curve(points))
    assert eff.n_images == want_n
    assert eff.last_passing_n == want_last
    assert eff.tokens == (None if want_n is None else 6.0 * want_n + 40)
    assert eff.last_passing_tokens == (None if want_last is None else 6.0 * want_last + 40)


def test_haystack_curve_from_predictions():
    rows = [row(str(n), c, n_images=n, tokens=t) for n, c, t in [(1, True, 50), (1, True, 52), (5, True, 80), (5, False, 82), (20, False, 170), (20, False, 174)]]
    got = haystack_curve(rows)
    assert [(p.n_images, p.accuracy, p.n, p.mean_tokens) for p in got] == [(1, 1.0, 2, 51.0), (5, 0.5, 2, 81.0), (20, 0.0, 2, 172.0)]
    s = summarize("visual_haystack", rows)
    assert s["effective_length"]["n_images"] == 1 and s["effective_length"]["tokens"] == 51.0
    assert [p["n_images"] for p in s["curve"]] == [1, 5, 20]


# ----------------------------------------------------------------------------- leaderboard


def _summaries(vh=(0.9, 0.7, 0.5), videomme=(0.6, 0.5, 0.25), mme_rows=None, mmbench=0.8):
    vh_rows = [row(str(n), i < round(acc * 10), n_images=n, tokens=10 * n) for n, acc in zip((1, 5, 20), vh) for i in range(10)]
    vm_rows = [row(d, i < round(acc * 4)) for d, acc in zip(("short", "medium", "long"), videomme) for i in range(4)]
    mme_rows = mme_rows or [row("existence", True, "e/1"), row("existence", True, "e/1"), row("count", True, "c/1"), row("count", False, "c/1")]
    mmb_rows = [row("attribute_recognition", i < round(mmbench * 10)) for i in range(10)]
    return {
        "visual_haystack": summarize("visual_haystack", vh_rows),
        "videomme": summarize("videomme", vm_rows),
        "mme": summarize("mme", mme_rows),
        "mmbench": summarize("mmbench", mmb_rows),
    }


def test_leaderboard_row_and_markdown():
    r = lb.row_for("mrope_pp/8k", _summaries(), "mrope++")
    assert r["vh_effective_images"] == 5 and r["vh_effective_tokens"] == 50
    assert (r["videomme_short"], r["videomme_medium"], r["videomme_long"]) == (50.0, 50.0, 25.0)
    assert r["videomme_overall"] == pytest.approx(41.7)
    assert r["mme_perception"] == 250.0  # existence 100 + 100, count 50 + 0
    assert r["mme_pct"] == 62.5
    assert r["mmbench"] == 80.0
    text = lb.markdown([r])
    # full names; accuracy [95% Wilson interval] n=items; the effective length in words
    assert text.splitlines()[2].startswith("| mrope_pp/8k | mrope++ | native | 5 images (~50 tokens) | 70.0 [52-83] n=30 |")
    shown, table = lb.display_rows([r])
    cells = table[0]
    assert cells["Video-MME short (%)"] == "50.0 [15-85] n=4"
    assert cells["MME perception (score / max)"] == "250.0 / 400 n=4"  # 2 perception categories evaluated
    assert cells["MMBench en dev (%)"] == "80.0 [49-94] n=10"
    chance = table[1]  # these rows do not say how many choices their items had: only MME's chance is known
    assert chance["model"] == "chance" and chance["MMBench en dev (%)"] == "–"
    assert chance["MME perception (score / max)"] == "150.0 / 400" and chance["MME total (% of max)"] == "37.5"
    assert "largest number of images N" in next(c.description for c in shown if c.key == "vh_effective_images")
    failing = lb.row_for("x/8k", _summaries(vh=(0.5, 0.5, 0.5)), "pi")
    assert lb.cell_text(next(c for c in shown if c.key == "vh_effective_images"), failing) == "below 60% at every N (1-20)"
    assert lb.method_label({"rope": {"method": "none"}, "v2pe": {"inference_delta": 0.25}}) == "v2pe(d=0.25)"
    assert lb.method_label({"rope": {"method": "mrope++"}}) == "mrope++"


def test_regression_check_flags_drops_beyond_the_tolerance():
    base = lb.row_for("base", _summaries(mmbench=0.8), "none (base)")
    same = lb.row_for("a/8k", _summaries(mmbench=0.8), "pi")
    small = lb.row_for("b/8k", _summaries(mmbench=0.7), "ntk")
    worse_mme = lb.row_for("c/8k", _summaries(mme_rows=[row("existence", False, "e/1"), row("existence", True, "e/1"), row("count", True, "c/1"), row("count", False, "c/1")]), "yarn")
    other_base = lb.row_for("d/8k", _summaries(mmbench=0.1), "v2pe")
    rows = [base, same, small, worse_mme, other_base]
    base_of = {"a/8k": "base", "b/8k": "base", "c/8k": "base", "d/8k": None}
    comparisons, regressions = lb.short_context_regressions(rows, base_of, tolerance_pp=2.0)
    assert {(r["model"], r["metric"]) for r in regressions} == {("b/8k", "mmbench"), ("c/8k", "mme_pct")}
    assert next(r for r in regressions if r["model"] == "b/8k")["drop"] == pytest.approx(10.0)
    assert all(c["status"] == "no base score" for c in comparisons if c["model"] == "d/8k")
    _, none = lb.short_context_regressions(rows, base_of, tolerance_pp=40.0)  # drops are 10 and 37.5
    assert none == []


def test_plots_are_png():
    s = _summaries()
    png = haystack_plot({"base": s["visual_haystack"]["curve"]}, {"base": "base"})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert videomme_plot([lb.row_for("base", s, "none")])[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(png, "t").startswith("![t](data:image/png;base64,")


# ----------------------------------------------------------------------------- lmms-eval results

# A results file as lmms-eval writes it (EvaluationTracker, 0.4+ layout), trimmed.
LMMS_RESULTS = {
    "results": {
        "mme": {
            "alias": "mme",
            "mme_cognition_score,none": 412.5,
            "mme_cognition_score_stderr,none": "N/A",
            "mme_percetion_score,none": 1532.25,
            "mme_percetion_score_stderr,none": "N/A",
        },
        "videomme": {"alias": "videomme", "videomme_perception_score,none": 55.4, "videomme_perception_score_stderr,none": "N/A"},
        "longvideobench_val_v": {"alias": "longvideobench_val_v", "lvb_acc,none": 0.5312, "lvb_acc_stderr,none": "N/A"},
        "mmbench_en_dev": {"alias": "mmbench_en_dev", "gpt_eval_score,none": 78.3, "submission,none": None},
    },
    "group_subtasks": {"mme": [], "videomme": [], "longvideobench_val_v": [], "mmbench_en_dev": []},
    "configs": {},
    "versions": {"mme": "Yaml", "videomme": "Yaml"},
    "n-shot": {"mme": 0},
    "higher_is_better": {"mme": {"mme_cognition_score": True, "mme_percetion_score": True}},
    "n-samples": {"mme": {"original": 2374, "effective": 2374}, "videomme": {"original": 2700, "effective": 2700}},
    "config": {"model": "giraffe_qwen2_vl", "model_args": "pretrained=/data/checkpoints/mrope_pp/8k/final", "batch_size": "1"},
    "git_hash": "abc1234",
    "date": "20260101_120000",
    "lmms_eval_version": "0.7.3",
}


def test_lmms_results_parser_on_a_written_results_file(tmp_path):
    out = tmp_path / "lmms" / "giraffe_qwen2_vl"
    out.mkdir(parents=True)
    (out / "20260101_120000_results.json").write_text(json.dumps(LMMS_RESULTS))
    (out / "20260101_120000_samples_mme.jsonl").write_text("{}\n")
    path = lmms.find_results(tmp_path / "lmms")
    parsed = lmms.parse_results(path)
    assert parsed["videomme_overall"] == 55.4
    assert parsed["longvideobench"] == pytest.approx(53.12)
    assert (parsed["mme_perception"], parsed["mme_cognition"]) == (1532.25, 412.5)
    assert parsed["mme_pct"] == pytest.approx((1532.25 + 412.5) / 2800 * 100)
    assert parsed["mmbench"] == 78.3
    assert parsed["n_samples"] == {"mme": 2374, "videomme": 2700}
    assert parsed["model_args"].startswith("pretrained=")
    r = lmms.leaderboard_row("mrope_pp/8k", "mrope++", parsed)
    assert r["source"] == "lmms-eval" and r["mme_perception"] == 1532.2 and r["longvideobench"] == 53.1
    assert r["vh_effective_images"] is None  # lmms-eval has no Visual Haystack task


def test_lmms_results_parser_tolerates_missing_tasks_and_dict_values():
    parsed = lmms.parse_results({"results": {"mme": {"mme_cognition_score,none": {"total_score": 300.0}, "mme_percetion_score,none": {"total_score": 1400.0}}}})
    assert parsed["mme_cognition"] == 300.0 and parsed["mme_perception"] == 1400.0
    assert "videomme_overall" not in parsed
    with pytest.raises(FileNotFoundError):
        lmms.find_results("/nonexistent-dir")


def test_lmms_command_and_environment():
    cmd = lmms.command("/ckpt", "/out", tasks=("mme",), limit=4, python="python")
    assert cmd[:3] == ["python", "-m", "lmms_eval"]
    assert cmd[cmd.index("--model") + 1] == "giraffe_qwen2_vl"
    assert cmd[cmd.index("--model_args") + 1] == "pretrained=/ckpt"
    assert cmd[cmd.index("--limit") + 1] == "4"
    env = lmms.environment("/repo", {"LMMS_EVAL_PLUGINS": "other.plugin", "PYTHONPATH": "/x"})
    assert env["LMMS_EVAL_PLUGINS"] == "other.plugin,eval.lmms_plugin"
    assert env["PYTHONPATH"].split(":")[0] == "/repo"
    assert lmms.environment("/repo", {"LMMS_EVAL_PLUGINS": "eval.lmms_plugin"})["LMMS_EVAL_PLUGINS"] == "eval.lmms_plugin"
    from eval.lmms_plugin.models import AVAILABLE_MODELS

    assert AVAILABLE_MODELS == {lmms.MODEL_NAME: "GiraffeQwen2VL"}
