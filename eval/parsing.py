"""Reading an answer out of free-form model output: yes/no and option letters.

Greedy decoding of a closed question still produces text ("Yes.", "(B) a red circle",
"The answer is C", "it is the blue square"), so the parsers accept the usual forms and return
``None`` when nothing can be read with confidence; the caller then scores the item wrong and
keeps the raw text. Rules (documented because they decide accuracy):

yes/no
    lower-cased, the first standalone word among the yes-variants (yes, y, yeah, yep, true,
    correct) or no-variants (no, n, nope, false, incorrect) wins, after dropping an
    ``Answer:``-style prefix. "Not sure" is not "no"; a text with neither is unparseable.
option letter
    in order: a letter that opens the answer ("B", "(B)", "B.", "B)", "[B]"), after dropping
    prefixes such as "The answer is" / "Answer:" / "Best option:"; then an explicit
    "answer/option (is) X" anywhere; then a lone "(X)" anywhere; then the text of exactly one
    option contained in the output (case-insensitive; an option whose text lies inside another
    matched option's text does not count). Only letters of the
    item's options count, and a capital "A" used as an article ("A red circle") is only read as
    a letter when followed by a delimiter, never by a word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from eval.items import YES_NO

_YES = {"yes", "y", "yeah", "yep", "true", "correct"}
_NO = {"no", "n", "nope", "false", "incorrect"}
_PREFIXES = (
    "the best answer is",
    "the correct answer is",
    "the answer is",
    "best answer:",
    "best option:",
    "the best option is",
    "the correct option is",
    "correct answer:",
    "final answer:",
    "answer:",
    "answer",
)


def _strip_prefix(text: str) -> str:
    low = text.lower()
    for prefix in _PREFIXES:
        if low.startswith(prefix):
            return text[len(prefix) :].lstrip(" :\t\n-*")
    return text


def parse_yes_no(text: str | None) -> str | None:
    """``"yes"``, ``"no"`` or ``None`` (see the module docstring)."""
    if not text:
        return None
    body = _strip_prefix(text.strip())
    for word in re.findall(r"[a-z]+", body.lower()):
        if word in _YES:
            return "yes"
        if word in _NO:
            return "no"
    return None


_LEADING = re.compile(r"^[\s*_`\"']*[\(\[]?\s*([A-Z])\s*(?:[\)\]\.:,;*_`\"']|$|\s*\n)")
_LEADING_ALONE = re.compile(r"^[\s*_`\"']*([A-Z])(?:\s+|$)")
_EXPLICIT = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*[\(\[]?([A-Z])(?![a-zA-Z])", re.I)
_PAREN = re.compile(r"[\(\[]([A-Z])[\)\]]")


def parse_choice(text: str | None, options: Mapping[str, str]) -> str | None:
    """The option letter an output names, or ``None`` (see the module docstring)."""
    if not text:
        return None
    letters = {k.upper() for k in options}
    body = _strip_prefix(text.strip())
    m = _LEADING.match(body)
    if m and m.group(1) in letters:
        return m.group(1)
    m = _LEADING_ALONE.match(body)
    if m and m.group(1) in letters and m.group(1) != "A":
        return m.group(1)
    if m and m.group(1) == "A" in letters and len(body.split()) == 1:
        return "A"
    for m in _EXPLICIT.finditer(text):
        if m.group(1).upper() in letters and m.group(1).isupper():
            return m.group(1).upper()
    found = {m.group(1) for m in _PAREN.finditer(text) if m.group(1) in letters}
    if len(found) == 1:
        return found.pop()
    low = text.lower()
    matches = [k.upper() for k, v in options.items() if v and str(v).strip() and str(v).strip().lower() in low]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:  # "dark red" also matches "red": drop options contained in another match
        texts = {k: str(options[k]).strip().lower() for k in matches}
        outer = [k for k in matches if not any(k != o and texts[k] in texts[o] for o in matches)]
        if len(outer) == 1:
            return outer[0]
    return None


def parse_answer(text: str | None, answer_type: str, options: Mapping[str, str]) -> str | None:
    return parse_yes_no(text) if answer_type == YES_NO else parse_choice(text, options)
