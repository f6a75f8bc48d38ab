"""Adaptive-N majority voting: stopping rules, exact ground truth, estimators from pulls.

An adaptive arm is (prompt, :class:`AdaptiveScheme`): draw up to ``n_max`` samples in batches of
``batch``, ask the stopping rule after each batch, vote over every sample drawn. Its utility on a
query is ``w_accuracy · credit − w_cost · cost of the samples drawn`` (docs/adaptive.md).

* rules: :class:`Decided`, :class:`Beta`, :class:`Dirichlet`, :class:`Window`, :class:`Fixed`
  (the plain fixed-N_max vote); :func:`parse_rule` / :func:`parse_scheme` read their ids back;
* the definition on one ordered sequence: :func:`run_sequence` (and :func:`run_sequences`,
  vectorised);
* ground truth under i.i.d. draws from categorical cells: :func:`adaptive_exact`,
  :func:`adaptive_exact_cells`;
* :class:`ArmLayout`: where adaptive arms sit next to the fixed ones in the algorithms' arrays;
* estimates from pulls (n ≥ n_max samples): :func:`adaptive_ustat` (exact over all orderings, or
  seeded random orderings) and :func:`adaptive_utility` (per context).
"""

from __future__ import annotations

from iapo.adaptive._estimate import (
    AdaptiveEstimate,
    ProfileMemo,
    adaptive_ustat,
    adaptive_ustat_many,
    adaptive_utility,
)
from iapo.adaptive._exact import (
    ExactAdaptive,
    adaptive_exact,
    adaptive_exact_cells,
    answer_probs,
    cell_arrays,
)
from iapo.adaptive._layout import ArmLayout, adaptive_ids, check_adaptive_id
from iapo.adaptive._rules import (
    Beta,
    Decided,
    Dirichlet,
    Fixed,
    StopRule,
    VoteState,
    Window,
    parse_rule,
    vote_state,
)
from iapo.adaptive._scheme import (
    AdaptiveScheme,
    credit_of,
    parse_scheme,
    run_sequence,
    run_sequences,
)
from iapo.adaptive._space import DEFAULT_MAX_STATES

__all__ = [
    "DEFAULT_MAX_STATES",
    "AdaptiveEstimate",
    "AdaptiveScheme",
    "ArmLayout",
    "Beta",
    "Decided",
    "Dirichlet",
    "ExactAdaptive",
    "Fixed",
    "ProfileMemo",
    "StopRule",
    "VoteState",
    "Window",
    "adaptive_exact",
    "adaptive_exact_cells",
    "adaptive_ids",
    "adaptive_ustat",
    "adaptive_ustat_many",
    "adaptive_utility",
    "answer_probs",
    "cell_arrays",
    "check_adaptive_id",
    "credit_of",
    "parse_rule",
    "parse_scheme",
    "run_sequence",
    "run_sequences",
    "vote_state",
]
