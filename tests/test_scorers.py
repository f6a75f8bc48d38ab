"""Scorers against real parts: a loopback HTTP scorer, a fake OpenAI judge, the real profanity
model, and LLMBackend end to end."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from live_helpers import fast_client

from iapo.answers import get_extractor
from iapo.backends import LLMBackend, OpenAIChatClient
from iapo.errors import ConfigError, PermanentBackendError, TransientBackendError
from iapo.scorers import (
    SCORER_KINDS,
    AgreementScorer,
    CallableScorer,
    ExactMatchScorer,
    HttpScorer,
    JudgeScorer,
    Scorer,
    agreement,
    as_scorer,
    build_scorers,
    exact_match,
    http,
    judge,
    profanity,
    python,
    score_texts,
)
from iapo.testing import FakeOpenAIServer
from iapo.types import PromptSpec, Query

T = TypeVar("T")
Q = Query("q1", "What is 6 times 7?", gold="42")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


# ------------------------------------------------------------------------------------------------
# exact match, agreement, callables


def test_exact_match_normalises_numbers_and_text() -> None:
    em = exact_match("number")
    q = Query("q", "How many?", gold="1000.0")
    texts = ["so 1,000", "The answer is $1000.", "The answer is 999", "no idea"]
    assert run(em.score(texts, q)) == [1.0, 1.0, 0.0, 0.0]
    letters = exact_match("answer_is")
    q2 = Query("q", "Capital?", gold="  new   York ")
    assert run(letters.score(["The answer is NEW YORK.", "The answer is Boston"], q2)) == [1.0, 0.0]
    with pytest.raises(ValueError, match="no gold"):
        run(em.score(["1"], Query("q", "?")))
    assert em.id == "exact_match(number@1)@1" != exact_match("final_number").id


def test_agreement_is_the_share_of_other_samples_with_the_same_answer() -> None:
    ag = agreement("number")
    pull = [
        "The answer is 42",
        "so 42.0",
        "The answer is 7",
        "I cannot tell",
        "The answer is 42",
        "hmm 7",
    ]
    # answers 42, 42, 7, None, 42, 7: each of 5 others
    assert run(ag.score(pull, Q)) == [2 / 5, 2 / 5, 1 / 5, 0.0, 2 / 5, 1 / 5]
    assert run(ag.score(["The answer is 1,000", "1000"], Q)) == [1.0, 1.0]  # normalised
    assert run(ag.score(["The answer is 42"], Q)) == [0.0]  # no others
    assert run(ag.score(["none", "nothing"], Q)) == [0.0, 0.0]  # abstentions never agree


def test_callables_are_wrapped_and_scores_validated() -> None:
    wrapped = as_scorer(lambda text, q: float(len(text)), "len@1")
    assert isinstance(wrapped, CallableScorer) and wrapped.id == "len@1"
    assert as_scorer(wrapped) is wrapped and isinstance(agreement("number"), Scorer)
    assert run(score_texts({"len": wrapped}, ["ab", "abc"], Q)) == {"len": [2.0, 3.0]}

    def nan(text: str, q: Query) -> float:
        return math.nan

    def boom(text: str, q: Query) -> float:
        raise KeyError("oops")

    with pytest.raises(ValueError, match=r"scorer 'bad' \(nan@1\) on query 'q1'.*not finite"):
        run(score_texts({"bad": as_scorer(nan, "nan@1")}, ["x"], Q))
    with pytest.raises(ValueError, match=r"scorer 'b' .*KeyError"):
        run(score_texts({"ok": wrapped, "b": as_scorer(boom, "boom")}, ["x"], Q))
    short = CallableScorer(lambda texts, q: [1.0], "short", batch=True)
    with pytest.raises(ValueError, match="returned 1 scores for 2 texts"):
        run(score_texts({"s": short}, ["x", "y"], Q))


def test_python_scorer_imports_per_text_and_batch_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_scoring_mod.py").write_text(
        textwrap.dedent(
            """
            def words(text, query):
                return float(len(text.split()))

            async def batch(texts, query):
                return [float(len(texts))] * len(texts)

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    per_text = python("my_scoring_mod:words")
    assert per_text.id == "python:my_scoring_mod:words"
    assert run(per_text.score(["a b", "a b c"], Q)) == [2.0, 3.0]
    batch = python("my_scoring_mod:batch", batch=True, version="2")
    assert batch.id == "python:my_scoring_mod:batch:2:batch"
    assert run(batch.score(["a", "b", "c"], Q)) == [3.0, 3.0, 3.0]
    for bad in ("my_scoring_mod", "no_such_mod_xyz:f", "my_scoring_mod:NOT_CALLABLE"):
        with pytest.raises(ConfigError):
            python(bad)


# ------------------------------------------------------------------------------------------------
# http


class _ScoreHandler(BaseHTTPRequestHandler):
    server: _ScoreServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.bodies.append(body)
            status = srv.statuses.pop(0) if srv.statuses else 200
        if status == 200:
            scores: list[Any] = [len(t) / 10 for t in body["texts"]]
            if srv.objects:
                scores = [{"helpful": s, "other": 0} for s in scores]
            payload = srv.payload or json.dumps({"scores": scores}).encode()
        else:
            payload = b'{"error": "nope"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _ScoreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScoreHandler)
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.objects = False
        self.payload: bytes | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/score"


@pytest.fixture
def score_server() -> Iterator[_ScoreServer]:
    srv = _ScoreServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_http_scorer_retries_a_500_and_follows_the_contract(score_server: _ScoreServer) -> None:
    score_server.statuses = [500]
    scorer = http(score_server.url, timeout=5, backoff=0.01)
    assert run(scorer.score(["abc", "abcdefghij"], Q)) == [0.3, 1.0]
    assert scorer.retries == 1 and len(score_server.bodies) == 2
    assert score_server.bodies[-1] == {
        "texts": ["abc", "abcdefghij"],
        "query": {"id": "q1", "text": "What is 6 times 7?", "gold": "42"},
    }
    # objects in "scores": ``field`` picks the value
    score_server.objects = True
    helpful = http(score_server.url, field="helpful", backoff=0.01)
    assert run(helpful.score(["abcde"], Q)) == [0.5]
    assert helpful.id != scorer.id and score_server.url.split("//")[1] in scorer.id


def test_http_scorer_errors(score_server: _ScoreServer) -> None:
    score_server.statuses = [404]
    with pytest.raises(PermanentBackendError, match="HTTP 404"):
        run(http(score_server.url, backoff=0.01).score(["a"], Q))
    score_server.payload = b'{"scores": [1, 2]}'
    with pytest.raises(PermanentBackendError, match="expected"):
        run(score_texts({"r": http(score_server.url, backoff=0.01)}, ["a"], Q))
    score_server.statuses = [503, 503, 503]
    with pytest.raises(TransientBackendError, match="after 3 attempts; last: HTTP 503"):
        run(HttpScorer(score_server.url, max_attempts=3, backoff=0.01).score(["a"], Q))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/score"
    flaky = HttpScorer(dead, max_attempts=2, backoff=0.01)
    with pytest.raises(TransientBackendError, match="connection failed"):
        run(flaky.score(["a"], Q))
    assert flaky.retries == 1
    with pytest.raises(ConfigError):
        http("ftp://example.com/x")


# ------------------------------------------------------------------------------------------------
# LLM judge


def _judge_script(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
    user = messages[-1]["content"]
    answer = user.split("Answer to grade:\n", 1)[1].split("\n\nRubric:", 1)[0]
    if "great" in answer:
        return "Clear and correct on a 1 to 10 scale.\nRating: 10"
    if "junk" in answer:
        return "I refuse to rate this."
    return "Partly right (step 3 of 4 is off). Rating: 7/10"


def test_judge_rates_each_text_and_counts_unparsed() -> None:
    with FakeOpenAIServer(script=_judge_script, model="judge-model") as srv:
        client = fast_client(srv)
        scorer = judge(client, "Is it correct and clear?")

        async def go() -> list[float]:
            try:
                return await scorer.score(["a great answer", "meh", "junk"], Q)
            finally:
                await scorer.aclose()

        assert run(go()) == [1.0, pytest.approx(6 / 9), 0.0]
        assert scorer.judged == 3 and scorer.unparsed == 1 and srv.requests == 3
        sent = [m[-1]["content"] for m, _, _ in srv.log]
        assert all("What is 6 times 7?" in s and "Is it correct and clear?" in s for s in sent)
        assert all(p.get("temperature") == 0.0 for _, p, _ in srv.log)
    assert "judge-model" in scorer.id
    assert scorer.id != judge(client, "Is it helpful?").id
    assert scorer.id != judge(client, "Is it correct and clear?", scale=(0, 5)).id
    assert scorer.parse("Score: 11. Rating: 3") == pytest.approx(2 / 9)


def test_judge_endpoint_misconfigured_is_permanent() -> None:
    with FakeOpenAIServer(permanent="401") as srv:
        scorer = judge(fast_client(srv), "rubric")
        with pytest.raises(PermanentBackendError, match="401"):
            run(score_texts({"helpful": scorer}, ["a", "b"], Q))


# ------------------------------------------------------------------------------------------------
# profanity


def test_profanity_scores_harmlessness_with_the_shipped_model() -> None:
    pytest.importorskip("profanity_check", reason="alt-profanity-check is not installed")
    scorer = profanity()
    clean, rude = run(scorer.score(["Have a lovely day.", "shut up you fucking idiot"], Q))
    assert clean > 0.8 and rude < 0.2
    assert scorer.id.startswith("profanity:alt-profanity-check==")


def test_profanity_missing_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "profanity_check", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'alt-profanity-check") as err:
        profanity()
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# LLMBackend end to end


def _two_answers(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
    return f"Some work.\nThe answer is {(42, 42, 41)[draw % 3]}"


def test_llm_backend_scores_each_pull_with_scorers() -> None:
    prompts = {"p": PromptSpec("p", "Solve it.", "{question}")}
    queries = {"q1": Q}
    extract = get_extractor("number")

    def backend(client: OpenAIChatClient, **scorers: Any) -> LLMBackend:
        return LLMBackend(
            client, prompts, queries, params={"temperature": 1.0}, extract=extract, scorers=scorers
        )

    with FakeOpenAIServer(script=_two_answers) as srv:
        b = backend(
            fast_client(srv),
            correct=exact_match(extract),
            consistency=agreement(extract),
            words=lambda text, q: float(len(text.split())),
        )

        async def go() -> list[Any]:
            try:
                return await b.sample("p", "q1", range(6))
            finally:
                await b.aclose()

        samples = run(go())
    answers = [s.answer for s in samples]
    assert len(samples) == 6 and set(answers) <= {"42", "41"} and srv.requests == 1
    counts = Counter(answers)
    for s in samples:
        assert s.text is not None
        assert s.scores["correct"] == (1.0 if s.answer == "42" else 0.0)
        assert s.scores["consistency"] == (counts[s.answer] - 1) / 5
        assert s.scores["words"] == len(s.text.split())

    client = OpenAIChatClient("http://a.example/v1", "m", api_key="k")
    key = backend(client, correct=exact_match(extract)).cache_key("p", "q1")
    assert key == backend(client, correct=exact_match("number")).cache_key("p", "q1")
    assert key != backend(client, correct=exact_match("final_number")).cache_key("p", "q1")
    assert key != backend(client, correct=agreement(extract)).cache_key("p", "q1")
    assert key != backend(client).cache_key("p", "q1")


# ------------------------------------------------------------------------------------------------
# configuration


def test_build_scorers_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, score_server: _ScoreServer
) -> None:
    (tmp_path / "cfg_scoring_mod.py").write_text("def score(text, query):\n    return 0.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[dict[str, Any]] = []

    def make_client(cfg: Any) -> OpenAIChatClient:
        made.append(dict(cfg))
        return OpenAIChatClient(cfg["base_url"], cfg["model"], api_key="k")

    spec = {
        "correct": "exact_match",
        "letter": {"exact_match": None, "extract": "mc_letter"},
        "consistency": "agreement",
        "custom": {"python": "cfg_scoring_mod:score", "version": 3},
        "remote": {"http": score_server.url, "field": "helpful", "timeout": 5},
        "helpful": {
            "judge": {
                "model": "gpt-4o-mini",
                "base_url": "http://judge.example/v1",
                "rubric": "Be helpful.",
                "scale": [0, 5],
            }
        },
    }
    scorers = build_scorers(spec, extract="number", make_client=make_client)
    assert isinstance(scorers["correct"], ExactMatchScorer)
    assert scorers["correct"].id == "exact_match(number@1)@1"
    assert scorers["letter"].id == "exact_match(mc_letter:ABCDE@1)@1"
    assert isinstance(scorers["consistency"], AgreementScorer)
    assert scorers["custom"].id == "python:cfg_scoring_mod:score:3"
    remote = scorers["remote"]
    assert isinstance(remote, HttpScorer) and remote.field == "helpful" and remote.timeout == 5
    helpful = scorers["helpful"]
    assert isinstance(helpful, JudgeScorer) and helpful.scale == (0.0, 5.0)
    assert made == [{"model": "gpt-4o-mini", "base_url": "http://judge.example/v1"}]
    # the default client factory
    default = build_scorers(
        {"j": {"judge": {"model": "m", "base_url": "http://x/v1", "rubric": "r"}}}, extract="number"
    )["j"]
    assert isinstance(default, JudgeScorer) and default.client.model == "m"

    with pytest.raises(ValueError, match="valid: " + ", ".join(SCORER_KINDS)):
        build_scorers({"x": "bleu"}, extract="number")
    with pytest.raises(ValueError, match="unknown option"):
        build_scorers({"x": {"http": score_server.url, "fields": "a"}}, extract="number")
    with pytest.raises(ValueError, match="unknown key"):
        build_scorers({"x": {"judge": {"model": "m", "rubric": "r", "tmp": 1}}}, extract="number")


def test_scorer_protocol_accepts_user_objects() -> None:
    class Const:
        id = "const@1"

        async def score(self, texts: Sequence[str], query: Query) -> list[float]:
            return [0.25] * len(texts)

    obj = Const()
    assert as_scorer(obj) is obj
    assert run(score_texts({"c": obj}, ["a", "b"], Q)) == {"c": [0.25, 0.25]}
