"""Sample rows of the SQLite bank: encoding and decoding, cheap where rows repeat.

``scores`` and ``usage`` are JSON objects in the bank (readable by any SQLite client, and what a
later server bank stores too). Replayed samples repeat a handful of score and usage dicts over
millions of rows, so each distinct one is encoded (and decoded) once and its text reused; a
decoded dict is copied per sample, except that a repeated bare row (a replayed sample, stored
without its text) comes back as the same read-only Sample, as a replayed pool's samples are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from iapo.types import Sample

__all__ = ["Codec", "Row"]

#: A stored row past its key: answer, scores (JSON), cost, text, usage (JSON or None).
Row = tuple[str | None, str, float, str | None, str | None]

#: Distinct values each memo keeps before it starts over (bounds memory on varied data).
_MEMO = 4096


class Codec:
    """Sample <-> row, with memos of the JSON of recurring scores and usage (not thread-safe:
    the bank calls it under its lock)."""

    def __init__(self) -> None:
        self._enc: dict[tuple[tuple[str, Any], ...], str] = {}
        self._dec: dict[str, dict[str, Any]] = {}
        self._bare: dict[tuple[str | None, str, float, str | None], Sample] = {}

    def _json(self, mapping: Mapping[str, Any]) -> str:
        key = tuple(mapping.items())
        try:
            return self._enc[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: no memo
            return json.dumps(dict(mapping))
        text = json.dumps(dict(mapping))
        if len(self._enc) >= _MEMO:
            self._enc.clear()
        self._enc[key] = text
        return text

    def encode(self, s: Sample) -> Row:
        """The stored form of ``s`` (its mappings copied into JSON: the caller keeps its own)."""
        return (
            s.answer,
            self._json(s.scores),
            float(s.cost),
            s.text,
            self._json(s.usage) if s.usage else None,
        )

    def encode_bare(self, s: Sample) -> Row:
        """:meth:`encode` without the text."""
        return (
            s.answer,
            self._json(s.scores),
            float(s.cost),
            None,
            self._json(s.usage) if s.usage else None,
        )

    def _loads(self, text: str) -> dict[str, Any]:
        got = self._dec.get(text)
        if got is None:
            got = json.loads(text)
            if len(self._dec) >= _MEMO:
                self._dec.clear()
            self._dec[text] = got
        return dict(got)

    def decode(self, answer: str | None, scores: str, cost: float, text: Any, usage: Any) -> Sample:
        """The sample a stored row holds (fresh dicts), except that a row without a text (a
        replayed sample, stored bare) equal to one decoded recently comes back as that same
        object, as a replayed pool's samples are shared: millions of such rows repeat a few
        outcomes. Samples are read-only."""
        if text is None:
            key = (answer, scores, cost, usage)
            got = self._bare.get(key)
            # equal keys but for the sign of a zero cost are different rows
            if got is not None and (
                cost != 0.0 or math.copysign(1.0, got.cost) == math.copysign(1.0, cost)
            ):
                return got
        sample = Sample(
            answer=answer,
            scores=self._loads(scores),
            cost=cost,
            text=text,
            usage=self._loads(usage) if usage else {},
        )
        if text is None:
            if len(self._bare) >= _MEMO:
                self._bare.clear()
            self._bare[key] = sample
        return sample
