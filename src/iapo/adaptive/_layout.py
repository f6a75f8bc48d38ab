"""Where adaptive arms live next to the fixed ones: the column layout of a prompt's arms.

Every array the algorithms keep per (context, prompt, arm) has ``width`` arm columns per
prompt: block 0 is the fixed arms N = 1..N_max (column ``N − 1``, as without adaptive arms),
block r ≥ 1 the adaptive arms of ``adaptive[r − 1]`` (``"<rule>/b<batch>"``) at N_max' =
1..N_max (column ``r·N_max + N_max' − 1``). Adaptive columns with N_max' = 1 are not arms
(:attr:`ArmLayout.valid` is False there): one sample cannot stop early, so such an arm *is*
the fixed N = 1 arm, and keeping both would only add a tie. Without adaptive arms the layout is
exactly today's ``(…, n_max)`` axis, so nothing changes for runs that do not configure them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from iapo.adaptive._rules import parse_rule
from iapo.adaptive._scheme import AdaptiveScheme
from iapo.types import Arm

__all__ = ["ArmLayout", "adaptive_ids", "check_adaptive_id"]


def check_adaptive_id(text: str) -> str:
    """``text`` (``"<rule>/b<batch>"``) normalised (the rule's own id); ValueError naming the
    problem otherwise."""
    rule, sep, batch = str(text).strip().rpartition("/")
    if not sep or not batch.startswith("b"):
        raise ValueError(f"bad adaptive arm {text!r}: expected RULE/bBATCH (e.g. decided/b2)")
    try:
        b = int(batch[1:])
    except ValueError:
        raise ValueError(f"bad adaptive arm {text!r}: the batch must be an integer") from None
    if b < 1:
        raise ValueError(f"bad adaptive arm {text!r}: the batch must be at least 1")
    return f"{parse_rule(rule).id}/b{b}"


def adaptive_ids(rules: Sequence[str], batch: int) -> tuple[str, ...]:
    """The arm ids ``"<rule>/b<batch>"`` of ``rules`` (validated, duplicates refused)."""
    out = tuple(check_adaptive_id(f"{r}/b{batch}") for r in rules)
    if len(set(out)) != len(out):
        raise ValueError("a stopping rule is listed twice")
    return out


@dataclass(frozen=True)
class ArmLayout:
    """The arm columns of one prompt: fixed N = 1..n_max, then each adaptive id's N_max'."""

    n_max: int
    adaptive: tuple[str, ...] = ()
    sizes: NDArray[np.int64] = field(init=False, repr=False, compare=False)
    valid: NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    tie_rank: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        blocks = 1 + len(self.adaptive)
        n = np.tile(np.arange(1, self.n_max + 1, dtype=np.int64), blocks)
        block = np.repeat(np.arange(blocks, dtype=np.int64), self.n_max)
        valid = (block == 0) | (n >= 2)
        # ties: smaller N first; at equal N the adaptive arms (in order) before the fixed one,
        # since an adaptive arm never draws more samples. Without adaptive arms: N − 1.
        order = np.where(block == 0, blocks - 1, block - 1)
        object.__setattr__(self, "sizes", n)
        object.__setattr__(self, "valid", valid)
        object.__setattr__(self, "tie_rank", (n - 1) * blocks + order)

    @property
    def width(self) -> int:
        return self.n_max * (1 + len(self.adaptive))

    @property
    def arms_per_prompt(self) -> int:
        return int(self.valid.sum())

    def arm(self, prompt: str, column: int) -> Arm:
        block, k = divmod(int(column), self.n_max)
        return Arm(prompt, k + 1, self.adaptive[block - 1] if block else "")

    def column(self, arm: Arm) -> int:
        """The column of ``arm`` (ValueError if this layout has no such arm)."""
        if not 1 <= arm.n <= self.n_max:
            raise ValueError(f"arm {arm} is outside N = 1..{self.n_max}")
        if not arm.adaptive:
            return arm.n - 1
        if arm.adaptive not in self.adaptive or arm.n < 2:
            raise ValueError(f"arm {arm} is not an arm of this run")
        return (1 + self.adaptive.index(arm.adaptive)) * self.n_max + arm.n - 1

    def scheme(self, adaptive: str, n: int) -> AdaptiveScheme:
        rule, _, batch = adaptive.rpartition("/")
        return AdaptiveScheme(parse_rule(rule), int(n), int(batch[1:]))

    def schemes(self) -> list[tuple[int, AdaptiveScheme]]:
        """(column, scheme) of every adaptive arm column."""
        out = []
        for r, a in enumerate(self.adaptive, start=1):
            for n in range(2, self.n_max + 1):
                out.append((r * self.n_max + n - 1, self.scheme(a, n)))
        return out
