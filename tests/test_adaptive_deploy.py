"""Adaptive arms at deploy (issue #15): ``Policy.ask`` and ``iapo ask`` draw an adaptive arm's
completions a batch at a time (native ``n``) from a real loopback OpenAI-compatible server until
the rule stops, vote over all of them, and say how many were drawn; the learned policy's
expected samples (``adaptive_exact``) match the realised mean over many asks."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from adaptive_helpers import CTX, Sequences, adaptive_policy, batches, categorical
from live_helpers import script, write_config

import iapo
from iapo.adaptive import AdaptiveScheme, adaptive_exact, parse_scheme, run_sequence
from iapo.cli import main
from iapo.errors import InputError
from iapo.testing.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run learned live (its folder); the tests rewrite copies of its policy."""
    tmp = tmp_path_factory.mktemp("learned")
    with FakeOpenAIServer(script) as srv:
        iapo.run(write_config(tmp, srv.base_url))
    return tmp / "run"


def test_a_fixed_arm_is_unchanged(learned: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(categorical(["7"], [1.0])) as srv:
        policy = adaptive_policy(learned, tmp_path, srv.base_url, n=3, adaptive=None)
        ans = policy.ask("What is 3 + 4?", CTX)
        assert batches(srv.log) == [3]  # the N completions in one request, as before
        assert ans.answer == "7" and ans.samples_drawn == 3 and ans.scheme == ""
        d = ans.to_dict()
        assert "adaptive" not in d and d["n"] == 3 and d["samples_drawn"] == 3


@pytest.mark.parametrize(
    ("adaptive", "n", "expected"),
    [
        ("decided/b3", 5, [3]),  # 3 of 3 agree, 2 left: decided after the first batch
        ("decided/b2", 10, [2, 2, 2]),  # 6 agree with 4 left: the first decisive batch is the 3rd
        ("window:2/b1", 8, [1, 1]),  # ESC: the last 2 agree
        ("fixed/b4", 8, [4, 4]),  # the fixed rule in batches: all N
    ],
)
def test_unanimous_answers_stop_at_the_first_decisive_batch(
    learned: Path, tmp_path: Path, adaptive: str, n: int, expected: list[int]
) -> None:
    with FakeOpenAIServer(categorical(["7"], [1.0])) as srv:
        policy = adaptive_policy(learned, tmp_path, srv.base_url, n=n, adaptive=adaptive)
        ans = policy.ask("What is 3 + 4?", CTX)
        assert batches(srv.log) == expected  # one request per batch, native n = the batch
        assert srv.completions_served == ans.samples_drawn == sum(expected)
        assert ans.answer == "7" and ans.arm.adaptive == adaptive
        assert ans.scheme == f"{adaptive}/n{n}"
        assert ans.usage["completion_tokens"] == srv.completion_tokens_served
        assert ans.cost == pytest.approx(sum(s.cost for s in ans.samples))
        d = ans.to_dict()
        assert d["adaptive"] == adaptive and d["samples_drawn"] == sum(expected)
        assert len(d["samples"]) == sum(expected)


def test_split_answers_go_to_n_max(learned: Path, tmp_path: Path) -> None:
    alternating = Sequences(lambda q: ["1", "2"] * 10)
    with FakeOpenAIServer(alternating) as srv:
        policy = adaptive_policy(learned, tmp_path, srv.base_url, n=10, adaptive="decided/b2")
        ans = policy.ask("Which?", CTX)
        assert batches(srv.log) == [2] * 5 and ans.samples_drawn == 10
        assert ans.answer == "1"  # 5–5: the first to reach the top count, as the fixed vote


def _sequence(question: str, n: int) -> list[str | None]:
    rng = random.Random(question)
    return [rng.choices(["5", "6", "8", None], [0.5, 0.3, 0.15, 0.05])[0] for _ in range(n)]


def test_decided_answers_as_the_fixed_n_max_vote_and_stops_where_the_definition_does(
    learned: Path, tmp_path: Path
) -> None:
    n, adaptive = 9, "decided/b2"  # the batch does not divide N_max: the last batch is 1
    scheme = parse_scheme(f"{adaptive}/n{n}")
    questions = [f"Question {i}?" for i in range(40)]
    with FakeOpenAIServer(Sequences(lambda q: _sequence(q, n))) as srv:
        policy = adaptive_policy(learned, tmp_path / "a", srv.base_url, n=n, adaptive=adaptive)
        adaptive_answers = []
        for q in questions:
            before = len(srv.log)
            ans = policy.ask(q, CTX)
            _, drawn = run_sequence(scheme, _sequence(q, n), None)
            assert ans.samples_drawn == drawn  # the definition, on the sequence served
            bounds = [b for b in scheme.boundaries() if b <= drawn]
            assert batches(srv.log[before:]) == np.diff([0, *bounds]).tolist()
            assert [s.answer for s in ans.samples] == _sequence(q, n)[:drawn]
            adaptive_answers.append((ans.answer, ans.samples_drawn))
    with FakeOpenAIServer(Sequences(lambda q: _sequence(q, n))) as srv:
        fixed = adaptive_policy(learned, tmp_path / "f", srv.base_url, n=n, adaptive=None)
        fixed_answers = [fixed.ask(q, CTX).answer for q in questions]
    assert [a for a, _ in adaptive_answers] == fixed_answers
    early = sum(d < n for _, d in adaptive_answers)
    assert 0 < early < len(questions)  # both cases are exercised


def _moments(
    scheme: AdaptiveScheme, answers: Sequence[str | None], probs: Sequence[float]
) -> tuple[float, float]:
    """E[τ] and E[τ²] of the samples drawn, by enumerating every sequence up to where the
    scheme stops (the definition, independent of the dynamic programme)."""
    first = second = 0.0
    stops = set(scheme.boundaries())

    def walk(prefix: list[str | None], p: float) -> None:
        nonlocal first, second
        n = len(prefix)
        if n in stops and scheme.should_stop(prefix):
            first += p * n
            second += p * n * n
            return
        for a, q in zip(answers, probs, strict=True):
            walk([*prefix, a], p * q)

    walk([], 1.0)
    return first, second


@pytest.mark.parametrize(
    ("adaptive", "n", "asks"), [("decided/b2", 8, 300), ("beta:0.9/b1", 6, 300)]
)
def test_the_expected_samples_of_the_learned_policy_are_the_realised_mean(
    learned: Path, tmp_path: Path, adaptive: str, n: int, asks: int
) -> None:
    """The policy's ``expected_samples`` (as a run writes it: ``adaptive_exact`` on the arm's
    answer distribution) against the mean samples drawn over ``asks`` seeded asks; tolerance
    4 standard errors of the mean, from the exact variance of τ (enumerated)."""
    answers, probs = ["42", "41", "40", None], [0.5, 0.3, 0.15, 0.05]
    scheme = parse_scheme(f"{adaptive}/n{n}")
    exact = adaptive_exact(np.array([probs[:3]]), np.array([0]), scheme, mean_cost=np.ones(1))
    expected = float(exact.samples[0])
    mean, square = _moments(scheme, answers, probs)
    assert mean == pytest.approx(expected, rel=1e-9)  # the programme = the definition
    tolerance = 4 * math.sqrt((square - mean**2) / asks)
    with FakeOpenAIServer(categorical(answers, probs), seed=11) as srv:
        policy = adaptive_policy(
            learned, tmp_path, srv.base_url, n=n, adaptive=adaptive, expected_samples=expected
        )
        learned_samples = float(policy.result.policy[CTX]["expected_samples"])
        drawn, costs, per_sample = [], [], set()
        for i in range(asks):
            ans = policy.ask(f"What is the answer to question {i}?", CTX)
            drawn.append(ans.samples_drawn)
            costs.append(ans.cost)
            per_sample |= {round(s.cost, 12) for s in ans.samples}
        assert srv.completions_served == sum(drawn)
    realised = float(np.mean(drawn))
    assert abs(realised - learned_samples) <= tolerance, (realised, learned_samples, tolerance)
    assert min(drawn) < n  # it did stop early
    # cost: every sample costs the same c here, so the expected cost is c·E[τ] (Wald)
    (c,) = per_sample
    assert abs(float(np.mean(costs)) - c * learned_samples) <= c * tolerance


def test_ask_cli_says_how_many_samples_were_drawn(
    learned: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(categorical(["7"], [1.0])) as srv:
        adaptive_policy(learned, tmp_path, srv.base_url, n=5, adaptive="decided/b3")
        assert main(["ask", str(tmp_path), "What is 3 + 4?", "--context", CTX, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["adaptive"] == "decided/b3" and out["scheme"] == "decided/b3/n5"
        assert out["samples_drawn"] == 3 and len(out["samples"]) == 3 and out["answer"] == "7"
        assert main(["ask", str(tmp_path), "What is 3 + 4?", "--context", CTX]) == 0
        said = capsys.readouterr()
        assert said.out.strip().endswith("The answer is 7")
        assert "careful @ N≤5 (decided/b3: 3 drawn)" in said.err


@pytest.mark.parametrize("adaptive", ["nonsense/b2", "decided/x2", "decided/b0", 3])
def test_a_malformed_adaptive_arm_is_an_input_error_naming_the_file(
    learned: Path, tmp_path: Path, adaptive: object
) -> None:
    data = json.loads((learned / "result.json").read_text())
    data["policy"][CTX]["adaptive"] = adaptive
    (tmp_path / "result.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"result\.json"):
        iapo.deploy.Policy.load(tmp_path)


def test_an_adaptive_arm_needs_majority_voting(learned: Path, tmp_path: Path) -> None:
    data = json.loads((learned / "result.json").read_text())
    data["policy"][CTX]["adaptive"] = "decided/b2"
    data["strategy"] = "best_of_n"
    (tmp_path / "result.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="adaptive arms need majority voting"):
        iapo.deploy.Policy.load(tmp_path)
    del data["policy"][CTX]["adaptive"]  # the same result with fixed arms loads
    (tmp_path / "result.json").write_text(json.dumps(data))
    assert iapo.deploy.Policy.load(tmp_path).strategy.name == "best_of_n"
