"""How ``n`` completions are asked for (``NMode``) and how an endpoint says it refuses ``n > 1``."""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["N_REJECTED", "NMode", "NRejected"]


NMode = Literal["auto", "native", "fanout"]

#: How endpoints that do not support ``n > 1`` say so (llama.cpp: "Only one completion choice is
#: allowed", HTTP 400 in older and 500 in newer builds).
N_REJECTED = re.compile(
    r"only one completion choice"
    r"|\bn\b\W{0,3}(?:must be 1|is not supported|not supported|unsupported)"
    r"|n_choices|multiple (?:choices|completions) (?:are )?not supported",
    re.IGNORECASE,
)


class NRejected(Exception):
    """The endpoint refused ``n > 1``."""
