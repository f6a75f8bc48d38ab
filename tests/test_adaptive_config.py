"""The ``adaptive`` config section (issue #15): validation, the problem it builds, run ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iapo.config import parse_config
from iapo.errors import ConfigError
from iapo.setups import setup

BASE = {
    "name": "ad",
    "strategy": "majority_vote",
    "pool": "builtin:mcqa-gpt35-comprehensive",
    "n_max": 4,
    "contexts": {"grid": {"cost_weight": [0.0, 0.2]}},
    "budget": 3000,
}
#: ``setup(BASE).run_id`` before the ``adaptive`` section existed (commit bca8de2's code)
BEFORE = "aa789c393012"


def _cfg(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, "run_dir": str(tmp_path / "run"), **extra}))
    return path


def test_adaptive_section_builds_adaptive_arms(tmp_path: Path) -> None:
    s = setup(_cfg(tmp_path, adaptive={"rules": ["decided", "beta:0.95", "window:4"], "batch": 2}))
    problem = s.problem
    assert problem.adaptive == ("decided/b2", "beta:0.95/b2", "window:4/b2")
    arms = {str(a) for a in problem.arms}
    assert "p@1~decided/b2" not in {a.replace(problem.prompts[0], "p") for a in arms}
    assert f"{problem.prompts[0]}@2~decided/b2" in arms and f"{problem.prompts[0]}@4" in arms
    assert len(problem.arms) == len(problem.prompts) * (4 + 3 * 3)  # N_max' = 2..4 per rule


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"adaptive": {"rules": ["sometimes"]}}, "adaptive", "unknown stopping rule"),
        ({"adaptive": {"rules": ["beta:1.5"]}}, "adaptive", "beta"),
        ({"adaptive": {"rules": []}}, "adaptive.rules", ""),
        ({"adaptive": {"rules": ["decided"], "batch": 0}}, "adaptive.batch", ""),
        ({"adaptive": {"rules": ["decided"], "size": 2}}, "adaptive.size", ""),
        (
            {"adaptive": {"rules": ["decided"]}, "algorithm": {"estimator": "blocks"}},
            "adaptive",
            "ustat",
        ),
    ],
)
def test_bad_adaptive_sections_name_the_field(extra: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **extra}, "run.yaml")
    first = str(info.value).splitlines()[0]
    assert "run.yaml" in first and field in first and words in first


def test_best_of_n_refuses_adaptive() -> None:
    data = {
        **BASE,
        "strategy": "best_of_n",
        "objectives": ["quality"],
        "adaptive": {"rules": ["decided"]},
    }
    with pytest.raises(ConfigError, match="adaptive"):
        parse_config(data, "run.yaml")


def _run_id(src: Path, config: Path) -> str:
    code = "import sys; from iapo.setups import setup; print(setup(sys.argv[1]).run_id)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_run_id_is_unchanged_without_adaptive_and_changes_with_it(tmp_path: Path) -> None:
    plain = _cfg(tmp_path)
    here = setup(plain).run_id
    src = Path(__file__).resolve().parents[1] / "src"
    assert _run_id(src, plain) == here
    assert here == BEFORE  # computed by the implementation before adaptive arms (main)
    with_adaptive = setup(_cfg(tmp_path, adaptive={"rules": ["decided"]})).run_id
    other = setup(_cfg(tmp_path, adaptive={"rules": ["decided"], "batch": 2})).run_id
    assert len({here, with_adaptive, other}) == 3


def test_run_writes_adaptive_arms_to_result_json(tmp_path: Path) -> None:
    """A replayed run with adaptive arms: the policy, runner-ups and estimates name them with the
    ``"adaptive"`` key (fixed arms without it), the exact evaluation scores them and reports
    expected samples; re-reading the policy gives the same arms."""
    from iapo.runner import evaluate, run
    from iapo.types import Arm

    cfg = _cfg(tmp_path, budget=6000, adaptive={"rules": ["decided", "window:2"], "batch": 1})
    res = run(cfg)
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    policy = data["policy"]
    entries = [e for c in data["estimates"].values() for e in c]
    assert {e.get("adaptive") for e in entries} == {None, "decided/b1", "window:2/b1"}
    assert all(e["n"] >= 2 for e in entries if "adaptive" in e)
    assert all("adaptive" not in e or e["adaptive"] for e in entries)  # never an empty key
    ev = data["evaluation"]["contexts"]
    s = setup(cfg)
    for name, entry in policy.items():
        arm = Arm(entry["prompt"], entry["n"], entry.get("adaptive", ""))
        s.problem.layout.column(arm)  # an arm of the run
        want = float(arm.n) if not arm.adaptive else None
        got = ev[name]["expected_samples"]
        assert 1.0 <= got <= arm.n and (want is None or got == want)
        assert entry.get("expected_samples") == (got if arm.adaptive else None)
    assert any("adaptive" in e for e in policy.values())  # the checks above bite
    assert res.policy == policy
    # every adaptive estimate carries its exact expected samples (the report's Pareto plot)
    exact = evaluate(s, split="test")
    for e in entries:
        if "adaptive" in e:
            arm = Arm(e["prompt"], e["n"], e["adaptive"])
            assert e["expected_samples"] == exact.expected_samples(arm) <= arm.n
        else:
            assert "expected_samples" not in e
    assert any(e.get("expected_samples", 99) < e["n"] for e in entries)  # some stop early
