"""iapo: inference-aware prompt optimisation.

Choose the arm (prompt, N) jointly, per user preference (context), under a fixed budget of LLM
completions, with PSST (Prompt Scaling via Sequential Trimming).
"""

from __future__ import annotations

from iapo._run import Evaluation, RunResult, evaluate, preflight, run, setup
from iapo.config import RunConfig, load_config
from iapo.errors import IapoError, InputError
from iapo.types import Arm, Context, PullRequest, PullResult, Sample
from iapo.version import __version__

__all__ = [
    "Arm",
    "Context",
    "Evaluation",
    "IapoError",
    "InputError",
    "PullRequest",
    "PullResult",
    "RunConfig",
    "RunResult",
    "Sample",
    "__version__",
    "evaluate",
    "load_config",
    "preflight",
    "run",
    "setup",
]
