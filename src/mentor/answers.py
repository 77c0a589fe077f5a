"""Answers: ``\\boxed{}`` extraction, math equivalence (math-verify), QA EM/F1.

``extract_boxed`` finds the *last* ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) with
nested braces. ``math_equal`` compares two answers with ``math-verify`` (symbolic and numeric
equivalence), after a cheap string check. ``qa_exact_match`` / ``qa_f1`` use SQuAD-style
normalisation against a list of gold answers.
"""

from __future__ import annotations

import collections
import functools
import re
import string
import threading
from collections.abc import Iterable

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")


def extract_boxed(text: str | None) -> str | None:
    """The content of the last ``\\boxed{}``/``\\fbox{}`` in ``text`` (``None`` if there is none)."""
    if not text or not isinstance(text, str):
        return None
    for m in reversed(list(_BOX_RE.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                c = text[j]
                if c == "\\" and j + 1 < len(text):  # skip escaped chars such as \{ \}
                    j += 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
                j += 1
            continue  # unbalanced: try an earlier box
        if i > m.end():  # "\boxed 5": the token after the space
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0).rstrip(".,;")
    return None


def strip_answer(answer: str) -> str:
    """Light normalisation for string comparison (spaces, ``$``, trailing period, ``\\text{}``)."""
    s = str(answer).strip().strip("$").strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|displaystyle|!|,|;)", "", s)
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@functools.lru_cache(maxsize=65536)
def _parse(answer: str, timeout: int | None):
    from math_verify import parse

    answer = answer.strip()
    if not answer:
        return []
    candidates = [answer] if "\\boxed" in answer or "$" in answer else [f"${answer}$", answer]
    for cand in candidates:
        parsed = parse(cand, parsing_timeout=timeout)
        if parsed:
            return parsed
    return []


def math_equal(prediction: str | None, gold: str | None, timeout: int = 5) -> bool:
    """Whether two math answers are equivalent (``\\frac{1}{2}`` = ``0.5``). Never raises."""
    if prediction is None or gold is None:
        return False
    prediction, gold = str(prediction), str(gold)
    a, b = strip_answer(prediction), strip_answer(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    t = timeout if _in_main_thread() else None
    try:
        from math_verify import verify

        pg, pp = _parse(gold, t), _parse(prediction, t)
        if not pg or not pp:
            return False
        return bool(verify(pg, pp, timeout_seconds=t))
    except Exception:  # noqa: BLE001 - a failed comparison is "not equal"
        return False


_UNIT_RE = re.compile(r"\^\{?\\circ\}?|\\%|%|\\\$")
_FRAC_SHORT_RE = re.compile(r"\\frac(\d)(\d)")
_LHS_RE = re.compile(r"^[a-zA-Z]\w*=")


def normalize_math_answer(answer: str) -> str:
    """The normalisation of the paper's exact match for math (as Hendrycks et al.'s MATH
    ``strip_string``): ``strip_answer`` (spaces, ``$``, ``\\text{}``, ``\\left``/``\\right``,
    ``dfrac``/``tfrac``, trailing period), then degree and percent signs, ``\\frac12`` ->
    ``\\frac{1}{2}``, a leading ``x=``, a leading ``0`` before a decimal point (``.5`` ->
    ``0.5``). Nothing is evaluated: ``1/2`` and ``0.5`` stay different."""
    s = _UNIT_RE.sub("", strip_answer(answer))
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    if s.count("=") == 1 and _LHS_RE.match(s):
        s = s.split("=", 1)[1]
    if s.startswith("."):
        s = "0" + s
    return s


def math_exact_match(prediction: str | None, gold: str | None) -> bool:
    """The paper's math metric: exact match after ``normalize_math_answer``."""
    if prediction is None or gold is None:
        return False
    a, b = normalize_math_answer(str(prediction)), normalize_math_answer(str(gold))
    return bool(a) and a == b


# ----------------------------------------------------------------------- QA


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, articles and extra whitespace."""
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else [str(g) for g in golds]


def qa_exact_match(prediction: str | None, golds: str | Iterable[str]) -> bool:
    """Exact match after normalisation against any of the gold answers."""
    if prediction is None:
        return False
    p = normalize_answer(prediction)
    return any(p == normalize_answer(g) for g in _golds(golds))


def _f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str | None, golds: str | Iterable[str]) -> float:
    """Token F1 after normalisation, best over the gold answers."""
    if prediction is None:
        return 0.0
    return max((_f1(prediction, g) for g in _golds(golds)), default=0.0)
