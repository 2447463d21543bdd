"""Likelihood and cloze answer modes on the tiny Qwen2-VL: the runner's choice equals an
independent forward pass, multi-token candidates are summed (per byte in cloze mode), and a
yes/no set is no longer all wrong."""

import json

import pytest
import torch
from PIL import Image

from eval.items import CHOICE, YES_NO, EvalItem
from assets.contract.media import RejectRow
from eval.runner import YES_NO_CANDIDATES, RunConfig, Runner, candidates


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("ll-media")
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        p = root / f"img{i}.png"
        Image.new("RGB", (56, 56), colour).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def runner(tiny_model_dir):
    return Runner.from_checkpoint(tiny_model_dir, "tiny", RunConfig(batch_size=3, answer_mode="likelihood"))


def yes_no(i, images, answer="yes"):
    return EvalItem("mme", f"yn{i}", f"Is there a square number {i}? Please answer yes or no.", answer, YES_NO, images=images, split="existence")


def choice(i, images, letters="ABCD"):
    options = {k: f"option {k.lower()} {i}" for k in letters}
    text = "Which colour?\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    return EvalItem("mmbench", f"c{i}", text, letters[i % len(letters)], CHOICE, options, images=images)


def _direct_logprob(runner, item, continuation_ids):
    """log p(continuation | prompt) from one plain forward of the model over prompt + continuation."""
    inputs = runner.encode([runner.prepare(item)])
    n = inputs["input_ids"].shape[1]
    ids = torch.cat([inputs["input_ids"], torch.tensor([continuation_ids])], 1)
    kw = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    from assets.video.inputs import mm_token_type_ids

    with torch.no_grad():
        logits = runner.model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm_token_type_ids(ids, runner.tokenizer), **kw).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[n - 1 + j, t]) for j, t in enumerate(continuation_ids))


def test_single_token_choice_equals_direct_next_token_argmax(runner, images):
    items = [choice(0, images[:1]), choice(1, images[:2], "ABC"), choice(2, [], "ABCDE")]
    for item in items:  # option letters are one token each on the tiny tokenizer: the one-pass path
        assert all(len(ids) == 1 for ids in runner.candidate_ids(item).values())
    rows = runner.run(items)  # batched, left-padded
    for item, row in zip(items, rows):
        inputs = runner.encode([runner.prepare(item)])
        with torch.no_grad():
            logp = torch.log_softmax(runner.model(**inputs).logits[0, -1].float(), -1)
        letters = sorted(item.options)
        expected = {k: float(logp[runner.tokenizer(k, add_special_tokens=False)["input_ids"][0]]) for k in letters}
        got = json.loads(row["extra"])["candidate_logprobs"]
        assert got.keys() == expected.keys()
        assert all(abs(got[k] - expected[k]) < 1e-4 for k in letters), (got, expected)
        assert row["prediction"] == max(expected, key=expected.get) and row["raw_output"] == row["prediction"]
        assert row["status"] == "ok" and json.loads(row["extra"])["answer_mode"] == "likelihood"


def test_multi_token_candidates_are_summed_over_their_tokens(runner, images):
    ids = {k: runner.tokenizer(v, add_special_tokens=False)["input_ids"] for k, v in YES_NO_CANDIDATES.items()}
    assert all(len(v) > 1 for v in ids.values())  # "Yes" / "No" are two tokens on the tiny BPE
    items = [yes_no(0, images[:1]), yes_no(1, images, "no"), yes_no(2, [], "no")]
    rows = runner.run(items)
    for item, row in zip(items, rows):
        got = json.loads(row["extra"])["candidate_logprobs"]
        for label, cont in ids.items():
            assert got[label] == pytest.approx(_direct_logprob(runner, item, cont), abs=1e-4)
        assert row["prediction"] == max(got, key=got.get)
        assert row["raw_output"] == YES_NO_CANDIDATES[row["prediction"]]


def test_balanced_yes_no_set_scores_above_zero_and_predictions_are_valid(runner, images):
    items = [yes_no(i, images[: 1 + i % 3], "yes" if i % 2 else "no") for i in range(8)]
    rows = runner.run(items)
    assert all(r["status"] == "ok" and r["prediction"] in ("yes", "no") for r in rows)
    assert all(r["correct"] == (r["prediction"] == it.answer) for r, it in zip(rows, items))
    # a fixed model answers the same label or not: on a balanced set that is 50% or varies, never 0
    assert sum(r["correct"] for r in rows) > 0


def test_generate_stays_the_default_and_bad_modes_are_refused():
    assert RunConfig().answer_mode == "generate"
    with pytest.raises(ValueError, match="answer_mode"):
        RunConfig(answer_mode="logits")


def test_eval_config_uses_cloze_on_embedded_and_generate_on_hub():
    from assets.defs.evaluation import EvalConfig

    assert EvalConfig().run_config("embedded").answer_mode == "cloze"
    assert EvalConfig(answer_mode="likelihood").run_config("embedded").answer_mode == "likelihood"
    assert EvalConfig().run_config("hub").answer_mode == "generate"
    assert EvalConfig(answer_mode="generate").run_config("embedded").answer_mode == "generate"


def test_cloze_scores_each_options_text_per_byte_against_a_direct_forward(tiny_model_dir, images):
    cloze = Runner.from_checkpoint(tiny_model_dir, "tiny", RunConfig(batch_size=3, answer_mode="cloze"))
    options = {"A": "red", "B": "top left corner", "C": "a much longer option text", "D": "no"}
    items = [EvalItem("mmbench", f"cz{i}", "Which one?\n" + "\n".join(f"{k}. {v}" for k, v in options.items()), "ABCD"[i], CHOICE,
                      options, images=images[: i % 3]) for i in range(4)]
    items.append(yes_no(9, images[:1]))  # yes/no keeps its Yes/No candidates in cloze mode
    rows = cloze.run(items)  # batched: options of 1..5 tokens, right-padded together
    for item, row in zip(items[:4], rows):
        extra = json.loads(row["extra"])
        assert extra["answer_mode"] == "cloze" and row["status"] == "ok"
        for label, text in options.items():
            direct = _direct_logprob(cloze, item, cloze.tokenizer(text, add_special_tokens=False)["input_ids"])
            assert extra["candidate_logprobs"][label] == pytest.approx(direct, abs=1e-4)
            assert extra["candidate_scores"][label] == pytest.approx(direct / len(text.encode()), abs=1e-5)
        best = max(extra["candidate_scores"], key=extra["candidate_scores"].get)
        assert row["prediction"] == best and row["raw_output"] == options[best]  # the letter is scored, the text shown
        assert row["correct"] == (best == item.answer)
    yn = json.loads(rows[4]["extra"])
    assert set(yn["candidate_logprobs"]) == {"yes", "no"} and "candidate_scores" not in yn


def test_cloze_candidates_and_their_faults():
    item = EvalItem("mmbench", "x", "q", "B", CHOICE, {"b": " left ", "a": "right"})
    assert candidates(item, "cloze") == {"A": "right", "B": "left"}  # labels upper-cased, texts stripped
    assert candidates(item, "likelihood") == {"A": "A", "B": "B"}
    with pytest.raises(RejectRow, match="empty_option|no text"):
        candidates(EvalItem("mmbench", "y", "q", "A", CHOICE, {"A": "left", "B": "  "}), "cloze")
    with pytest.raises(RejectRow, match="without options"):
        candidates(EvalItem("mmbench", "z", "q", "A", CHOICE, {}), "cloze")


def test_training_targets_follow_the_answer_mode(tiny_model_dir, images):
    item = EvalItem("mmbench", "t", "Which colour?\nA. dark red\nB. blue", "A", CHOICE, {"A": "dark red", "B": "blue"}, images=images[:1])
    for mode, gold in (("likelihood", "A"), ("cloze", "dark red")):
        r = Runner.from_checkpoint(tiny_model_dir, "tiny", RunConfig(answer_mode=mode))
        end = r.tokenizer.convert_tokens_to_ids("<|im_end|>")
        target = r.training_batch([r.prepare(item)])["_target"][0].tolist()
        assert [t for t in target if t != -100] == r.tokenizer(gold, add_special_tokens=False)["input_ids"] + [end]
