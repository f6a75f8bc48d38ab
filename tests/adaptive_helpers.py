"""Shared pieces of the adaptive-arm deploy and serve tests: scripted upstream answers and a real
learned result with an adaptive arm written into its policy (as the run writes it: issue #15's
``adaptive`` and ``expected_samples`` keys)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iapo.deploy import Policy

CTX = "accuracy=1,cost=0"
#: Every completion has the same number of words, so every sample of a question costs the same.
TEXT = "Thinking hard here. The answer is {}"
ABSTAIN_TEXT = "Thinking hard here. No idea at all"


def text_of(answer: str | None) -> str:
    return ABSTAIN_TEXT if answer is None else TEXT.format(answer)


class Sequences:
    """A scripted upstream whose completions of a question come in a fixed order: the i-th
    completion ever served for a question is ``table(question)[i]`` (thread-safe), so the
    samples an adaptive ask draws are a known prefix of a known sequence."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.served: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
        question = messages[-1]["content"]
        with self.lock:
            i = self.served.get(question, 0)
            self.served[question] = i + 1
        return text_of(self.table(question)[i])


def categorical(
    answers: Sequence[str | None], probs: Sequence[float]
) -> Any:  # a Script: i.i.d. draws from a categorical distribution, seeded by the server's draw
    cum = [sum(probs[: i + 1]) for i in range(len(probs))]

    def script(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
        u = random.Random(draw).random()
        k = next((i for i, c in enumerate(cum) if u < c), len(cum) - 1)
        return text_of(answers[k])

    return script


def adaptive_policy(
    learned: Path,
    where: Path,
    url: str,
    *,
    n: int,
    adaptive: str | None,
    expected_samples: float | None = None,
    **backend: Any,
) -> Policy:
    """The learned policy with the context ``CTX`` on the careful prompt at ``n`` (adaptive:
    ``"<rule>/b<batch>"``, None for the fixed arm) and its backend pointed at ``url``."""
    where.mkdir(parents=True, exist_ok=True)
    data = json.loads((learned / "result.json").read_text())
    entry = data["policy"][CTX]
    entry.update(prompt="careful", n=n)
    entry.pop("adaptive", None)
    entry.pop("expected_samples", None)
    if adaptive is not None:
        entry["adaptive"] = adaptive
    if expected_samples is not None:
        entry["expected_samples"] = expected_samples
    data["config"]["backend"].update(
        {"base_url": url, "backoff": 0.0, "max_backoff": 0.0, "max_attempts": 2, **backend}
    )
    (where / "result.json").write_text(json.dumps(data))
    return Policy.load(where)


def batches(log: Sequence[tuple[list[dict[str, Any]], dict[str, Any], int]]) -> list[int]:
    """The number of completions each logged upstream request asked for (``n``, default 1)."""
    return [int(params.get("n", 1)) for _, params, _ in log]
