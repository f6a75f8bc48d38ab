"""iapo: inference-aware prompt optimisation.

Choose the arm (prompt, N) jointly, per user preference (context), under a fixed budget of LLM
completions, with PSST (Prompt Scaling via Sequential Trimming).
"""

from __future__ import annotations

from iapo.config import RunConfig, load_config
from iapo.errors import IapoError, InputError
from iapo.evaluation import Evaluation
from iapo.result import RunResult
from iapo.runner import evaluate, preflight, run
from iapo.setups import LiveSetup, ReplaySetup, Setup, setup
from iapo.types import Arm, Context, PullRequest, PullResult, Sample
from iapo.version import __version__

__all__ = [
    "Arm",
    "Context",
    "Evaluation",
    "IapoError",
    "InputError",
    "LiveSetup",
    "PullRequest",
    "PullResult",
    "ReplaySetup",
    "RunConfig",
    "RunResult",
    "Sample",
    "Setup",
    "__version__",
    "evaluate",
    "load_config",
    "preflight",
    "run",
    "setup",
]
