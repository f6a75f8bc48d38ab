"""Answer extraction and normalisation: from a completion's text to the answer that votes.

An *extractor* maps a completion's text to its final answer, or to ``None`` when it finds none
(the sample then abstains in a majority vote). Every extractor is an :class:`Extractor`: a callable
with a stable ``id`` that goes into the live backend's cache key, so that changing how answers are
read never silently reuses answers stored under another reading. The ids carry a version suffix
(``@1``); bump it whenever an extractor's behaviour changes.

``get_extractor("number")`` is the GSM8K default: the number after the last "answer is", else the
number in the last ``\\boxed{}``, else the last number in the text, normalised
(``"1,000.50"`` → ``"1000.5"``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "EXTRACTOR_NAMES",
    "Extractor",
    "answer_is",
    "boxed",
    "chain",
    "final_number",
    "get_extractor",
    "mc_letter",
    "normalize_number",
    "normalize_text",
    "number",
    "regex",
]


@dataclass(frozen=True)
class Extractor:
    """A named answer extractor: ``extractor(text) -> answer | None``.

    Two extractors are equal when their ids are; ``id`` must change whenever the behaviour does.
    """

    id: str
    fn: Callable[[str], str | None] = field(compare=False, repr=False)

    def __call__(self, text: str) -> str | None:
        if not isinstance(text, str):
            return None
        return self.fn(text)


# --------------------------------------------------------------------------------------------
# Normalisation


_NUMERIC = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_NUMBER_JUNK = str.maketrans(
    {",": None, "$": None, "%": None, "\\": None, " ": None, "\u2212": "-"}
)


def normalize_number(s: str | None) -> str | None:
    """A canonical spelling of a number, or ``None`` if ``s`` is not one.

    Strips thousands separators, ``$``, ``%``, LaTeX backslashes and a trailing full stop; drops
    trailing zeros of decimals; ``"-0"`` becomes ``"0"``. ``"1,000.50"`` → ``"1000.5"``,
    ``"18.00"`` → ``"18"``, ``"\\$-3"`` → ``"-3"``. Fractions (``"3/4"``) are not numbers here.
    """
    if s is None:
        return None
    t = s.strip().translate(_NUMBER_JUNK).rstrip(".")
    if not _NUMERIC.fullmatch(t):
        return None
    try:
        d = Decimal(t)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return None
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


_EDGE_PUNCT = string.punctuation + string.whitespace + "\u2018\u2019\u201c\u201d"


def normalize_text(s: str | None) -> str | None:
    """Casefolded, whitespace collapsed, punctuation stripped at both ends (``None`` stays)."""
    if s is None:
        return None
    return " ".join(s.casefold().split()).strip(_EDGE_PUNCT)


# --------------------------------------------------------------------------------------------
# Building blocks

#: A number as written in model output: optional sign and ``$``, thousands separators in groups
#: of three, an optional decimal part. Not preceded by a letter, digit, underscore or dot, so that
#: ``speed3`` or ``x.5`` yield nothing.
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-\u2212]?(?:\\?\$\s?)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
)
_ANSWER_RE = re.compile(r"\banswer\s*(?:is\b\s*:?|:)", re.IGNORECASE)
#: How far after "answer is" the answer may be (it is often on the next line, in display math).
_ANSWER_WINDOW = 120
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _numbers(text: str) -> list[str]:
    return [m.group(0) for m in _NUMBER_RE.finditer(text)]


def _answer_spans(text: str) -> list[str]:
    """What follows each "answer is" / "answer:", last occurrence first.

    A span runs to the first blank line and at most ``_ANSWER_WINDOW`` characters; leading
    whitespace, newlines and colons are skipped, so ``"The answer is:\\n\\[ \\boxed{22} \\]"`` gives
    ``"\\[ \\boxed{22} \\]"``.
    """
    spans = []
    for m in _ANSWER_RE.finditer(text):
        rest = text[m.end() :].lstrip(" \t\r\n:")
        rest = rest[:_ANSWER_WINDOW]
        blank = re.search(r"\n\s*\n", rest)
        if blank:
            rest = rest[: blank.start()]
        spans.append(rest.strip())
    spans.reverse()
    return spans


def _boxed_contents(text: str) -> list[str]:
    """The contents of every closed ``\\boxed{...}`` (nested braces allowed), last first."""
    out = []
    for m in _BOXED_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1].strip())
    out.reverse()
    return out


_LATEX_WRAPPERS = re.compile(r"\\[\(\)\[\]]|\$|\*\*|\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}")


def _clean_span(span: str) -> str:
    """Unwrap ``\\boxed{}``, inline-math delimiters, bold markers; drop a final full stop."""
    boxes = _boxed_contents(span)
    if boxes:
        span = boxes[-1]  # the first box in the span
    span = _LATEX_WRAPPERS.sub(lambda m: m.group(1) or m.group(2) or "", span)
    span = span.split("\n", 1)[0].strip()
    return span.rstrip(".").strip()


# --------------------------------------------------------------------------------------------
# Extractors


def _answer_is(text: str) -> str | None:
    for span in _answer_spans(text):
        cleaned = _clean_span(span)
        if cleaned:
            return cleaned
    return None


def _boxed(text: str) -> str | None:
    boxes = _boxed_contents(text)
    return boxes[0] if boxes else None


def _final_number(text: str) -> str | None:
    nums = _numbers(text)
    return normalize_number(nums[-1]) if nums else None


def _number(text: str) -> str | None:
    # 1. the number after the last "answer is" that is followed by one
    for span in _answer_spans(text):
        nums = _numbers(span)
        if nums:
            return normalize_number(nums[0])
    # 2. the number in the last \boxed{}
    for content in _boxed_contents(text):
        nums = _numbers(content)
        if nums:
            return normalize_number(nums[0])
    # 3. the last number in the text
    return _final_number(text)


#: "The answer is C" / "answer: C" / "Answer: (C)" (text after a colon within the span).
answer_is = Extractor("answer_is@1", _answer_is)
#: The content of the last ``\boxed{...}`` (nested braces allowed), unnormalised.
boxed = Extractor("boxed@1", _boxed)
#: The last number in the text, normalised.
final_number = Extractor("final_number@1", _final_number)
#: The GSM8K default: answer-is number, else boxed number, else last number; normalised.
number = Extractor("number@1", _number)


def mc_letter(letters: str = "ABCDE") -> Extractor:
    """A multiple-choice letter: ``Answer: (C)``, ``The answer is C``, ``Answer("C")``, ….

    Also ``\\boxed{C}``. The last such mention wins; letters are matched in upper case only (so
    the article "a" in "the answer is a bit…" is not an answer). A completion that is just ``C``,
    ``(C)`` or ``C.`` counts too.
    """
    if not letters or not letters.isalpha() or not letters.isupper():
        raise ValueError(f"mc_letter letters must be upper-case letters, got {letters!r}")
    cls = "[" + re.escape(letters) + "]"
    patterns = [
        re.compile(
            r"(?i:\banswer)\s*(?:(?i:is)\s*)?[:=]?\s*(?:(?i:option|choice)\s*)?"
            r"[\(\[\"'*]*\s*(" + cls + r")(?![\w])"
        ),
        re.compile(r"(?i:answer)\s*\(\s*[\"']?(" + cls + r")[\"']?\s*\)"),
        re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?(" + cls + r")\)?\s*\}?\s*\}"),
    ]
    alone = re.compile(r"\s*[\(\[]?(" + cls + r")[\)\]]?[.:]?\s*")

    def fn(text: str) -> str | None:
        best: tuple[int, str] | None = None
        for pat in patterns:
            for m in pat.finditer(text):
                if best is None or m.start(1) > best[0]:
                    best = (m.start(1), m.group(1))
        if best is not None:
            return best[1]
        whole = alone.fullmatch(text)
        return whole.group(1) if whole else None

    return Extractor(f"mc_letter:{letters}@1", fn)


def regex(pattern: str, group: int | str = 1, *, flags: int = 0) -> Extractor:
    """The given group of the *last* match of ``pattern`` (stripped), or ``None``.

    ``ValueError`` (never ``re.error``) for a pattern that does not compile or a group it lacks.
    """
    try:
        compiled = re.compile(pattern, flags)
    except (re.error, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"regex {pattern!r} is not a valid regular expression ({exc})") from None
    if isinstance(group, bool) or not isinstance(group, int | str):
        raise ValueError(f"regex group must be a group number or name, got {group!r}")
    if isinstance(group, int) and not 0 <= group <= compiled.groups:
        raise ValueError(f"regex {pattern!r} has {compiled.groups} group(s), asked for {group}")
    if isinstance(group, str) and group not in compiled.groupindex:
        raise ValueError(f"regex {pattern!r} has no group named {group!r}")

    def fn(text: str) -> str | None:
        last = None
        for m in compiled.finditer(text):
            last = m
        if last is None:
            return None
        value = last.group(group)
        return value.strip() if value is not None else None

    return Extractor(f"regex:{pattern}:{group}:{flags}@1", fn)


def chain(*extractors: Extractor) -> Extractor:
    """The first extractor's answer that is not ``None``."""
    if not extractors:
        raise ValueError("chain() needs at least one extractor")
    parts = tuple(extractors)

    def fn(text: str) -> str | None:
        for ex in parts:
            answer = ex(text)
            if answer is not None:
                return answer
        return None

    return Extractor("chain(" + ",".join(ex.id for ex in parts) + ")", fn)


_NAMED: dict[str, Extractor] = {
    "answer_is": answer_is,
    "boxed": boxed,
    "final_number": final_number,
    "number": number,
    "mc_letter": mc_letter(),
}

#: Valid names for :func:`get_extractor` (mappings: ``{"regex": ...}``, ``{"mc_letter": ...}``,
#: ``{"chain": [...]}``).
EXTRACTOR_NAMES = (*_NAMED, "{regex: PATTERN, group: G}", "{mc_letter: LETTERS}", "{chain: [...]}")


def get_extractor(spec: str | Mapping[str, Any] | Extractor) -> Extractor:
    """Resolve a configuration value to an :class:`Extractor`.

    ``"answer_is"``, ``"boxed"``, ``"final_number"``, ``"number"``, ``"mc_letter"``;
    ``{"regex": PATTERN, "group": 1}``; ``{"mc_letter": "ABCD"}``; ``{"chain": [spec, ...]}``.
    An unknown name raises ``ValueError`` listing the valid ones.
    """
    valid = ", ".join(EXTRACTOR_NAMES)
    if isinstance(spec, Extractor):
        return spec
    if isinstance(spec, str):
        try:
            return _NAMED[spec]
        except KeyError:
            raise ValueError(f"unknown extractor {spec!r}; valid: {valid}") from None
    if isinstance(spec, Mapping):
        keys = set(spec)
        if "regex" in keys and keys <= {"regex", "group"}:
            return regex(str(spec["regex"]), spec.get("group", 1))
        if keys == {"mc_letter"}:
            return mc_letter(str(spec["mc_letter"]))
        if keys == {"chain"} and isinstance(spec["chain"], list | tuple):
            return chain(*(get_extractor(s) for s in spec["chain"]))
        raise ValueError(f"unknown extractor {dict(spec)!r}; valid: {valid}")
    raise ValueError(f"unknown extractor {spec!r}; valid: {valid}")
