"""Answer parsing: yes/no variants and option letters in the forms models actually produce."""

import pytest

from eval.items import CHOICE, YES_NO
from eval.parsing import parse_answer, parse_choice, parse_yes_no

OPTIONS = {"A": "a red circle", "B": "a blue square", "C": "a green triangle", "D": "nothing"}


@pytest.mark.parametrize(
    "text,want",
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("YES, there is.", "yes"),
        ("Answer: No", "no"),
        ("The answer is no.", "no"),
        ("no", "no"),
        ("Y", "yes"),
        ("N", "no"),
        ("True", "yes"),
        ("  \n Yes\n", "yes"),
        ("Not sure", None),  # "not" is not "no"
        ("nothing to see", None),
        ("", None),
        (None, None),
        ("\n\n\n", None),
        ("It is blue", None),
    ],
)
def test_yes_no(text, want):
    assert parse_yes_no(text) == want


@pytest.mark.parametrize(
    "text,want",
    [
        ("A", "A"),
        ("B.", "B"),
        ("(B)", "B"),
        ("[C]", "C"),
        ("D) nothing", "D"),
        ("Answer: C", "C"),
        ("The answer is D.", "D"),
        ("The best answer is: B", "B"),
        ("**C**", "C"),
        ("I think the answer is (C) because it is green", "C"),
        ("option B", "B"),
        ("B. a blue square", "B"),
        ("It is a green triangle.", "C"),  # option text, unique
        ("A red circle.", "A"),  # the article "A" is read through the option text, not as a letter
        ("A book", None),  # an article followed by a word is not a letter
        ("E", None),  # not one of the options
        ("xyz", None),
        ("", None),
    ],
)
def test_choice(text, want):
    assert parse_choice(text, OPTIONS) == want


def test_choice_prefers_the_longest_option_text_when_one_contains_another():
    options = {"A": "red", "B": "dark red", "C": "blue"}
    assert parse_choice("it is dark red", options) == "B"
    assert parse_choice("red or blue", options) is None  # two options named: unparseable


def test_parse_answer_dispatches_on_answer_type():
    assert parse_answer("Yes", YES_NO, {}) == "yes"
    assert parse_answer("(B)", CHOICE, OPTIONS) == "B"
    assert parse_answer("Yes", CHOICE, OPTIONS) is None
