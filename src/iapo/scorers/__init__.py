"""Scorers: the objectives a Best-of-N aggregate maximises, one float per completion.

A :class:`Scorer` has a stable, versioned ``id`` (it goes into the live backend's cache key, so
changing how completions are scored never reuses scores stored under another scoring) and an
``async score(texts, query)`` that scores *all* completions of one pull at once and returns one
finite float per text, in order. Plain callables ``fn(text, query) -> float`` still work:
:func:`as_scorer` wraps them.

=================  =====================================================  ======================
scorer             what it measures                                       strength
=================  =====================================================  ======================
``exact_match``    extracted answer == the query's gold (normalised)      a real verifier
``python``         whatever your function computes                        yours to judge
``http``           whatever your endpoint computes                        yours to judge
``judge``          an LLM's rating against a rubric                       a model's opinion
``profanity``      1 − P(offensive) from a bag-of-words classifier        **weak proxy**
``agreement``      share of the other samples with the same answer       **weak proxy**
=================  =====================================================  ======================

Weak proxies, plainly: ``profanity`` is a harmlessness proxy only: a linear bag-of-words model of
offensive *language*; it misses harmful content written politely and flags harmless text that
quotes a swear word. ``agreement`` is self-consistency, not correctness: a model that is
consistently wrong agrees with itself. An LLM ``judge`` is only as good as the judge model and
the rubric, and favours long, confident answers.

``agreement`` also breaks an assumption of the estimators: a sample's score depends on the other
completions of the pull it was drawn in (its size and contents), so the scores are not i.i.d.
per-sample values, and samples from pulls of different N are not exchangeable. The U-statistic
estimate of a Best-of-N utility is exact only for per-sample scores; with ``agreement`` it is an
approximation (and reusing stored samples across pulls of another size mixes scores computed
against different neighbours).
"""

from __future__ import annotations

from iapo.scorers._answers import AgreementScorer, ExactMatchScorer, agreement, exact_match
from iapo.scorers._base import Scorer, score_texts
from iapo.scorers._build import SCORER_KINDS, build_scorers
from iapo.scorers._callable import CallableScorer, as_scorer, python
from iapo.scorers._http import HttpScorer, http
from iapo.scorers._judge import JudgeScorer, judge
from iapo.scorers._profanity import ProfanityScorer, profanity

__all__ = [
    "SCORER_KINDS",
    "AgreementScorer",
    "CallableScorer",
    "ExactMatchScorer",
    "HttpScorer",
    "JudgeScorer",
    "ProfanityScorer",
    "Scorer",
    "agreement",
    "as_scorer",
    "build_scorers",
    "exact_match",
    "http",
    "judge",
    "profanity",
    "python",
    "score_texts",
]
