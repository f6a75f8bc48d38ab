"""``iapo serve`` over real loopback HTTP: the ``openai`` SDK as the client, the project's
FakeOpenAIServer as the upstream endpoint, a policy learned live against it."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import REPO, Done
from hypothesis import given
from hypothesis import strategies as st
from live_helpers import script, write_config

import iapo
from iapo.backends import Backend
from iapo.cli import main
from iapo.deploy import Policy, _QuestionSlots
from iapo.serve import PolicyServer, ServeWarning
from iapo.serve._protocol import split_text
from iapo.testing.fake_openai import FakeOpenAIServer, FaultPlan
from iapo.types import Query, Sample

CTX = "accuracy=1,cost=0"


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run learned live (its folder); the tests serve copies with their own upstream."""
    tmp = tmp_path_factory.mktemp("learned")
    with FakeOpenAIServer(script) as srv:
        iapo.run(write_config(tmp, srv.base_url))
    return tmp / "run"


def make_policy(
    learned: Path,
    where: Path,
    url: str,
    *,
    n: int = 3,
    max_questions: int = 1024,
    concurrency: int | None = None,
    **backend: Any,
) -> Policy:
    """The learned policy with the context ``CTX`` on the careful prompt at ``n`` and its backend
    pointed at ``url`` (fast retries; ``backend`` overrides more of the backend section)."""
    where.mkdir(parents=True, exist_ok=True)
    data = json.loads((learned / "result.json").read_text())
    data["policy"][CTX].update(prompt="careful", n=n)
    data["config"]["backend"].update(
        {"base_url": url, "backoff": 0.0, "max_backoff": 0.0, "max_attempts": 2, **backend}
    )
    (where / "result.json").write_text(json.dumps(data))
    return Policy.load(where, concurrency=concurrency, max_questions=max_questions)


def sdk(server: PolicyServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=30)


def ask(question: str, **kw: Any) -> dict[str, Any]:
    return {"model": CTX, "messages": [{"role": "user", "content": question}], **kw}


def fixed(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
    """Every sample the same: the chosen answer's text is known exactly."""
    return f"Let us see.  Question:\n{messages[-1]['content']}\tThe answer is 7 "


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(script) as srv:
        yield srv


def test_a_chat_completion_is_the_arms_n_samples_aggregated(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url, n=3)
    with PolicyServer(policy, port=0) as server:
        client = sdk(server)
        assert {m.id for m in client.models.list().data} == set(policy.arms)
        resp = client.chat.completions.create(**ask("What is question number 5?"))
        assert upstream.completions_served == 3  # the context's arm: careful @ N=3
        messages, _, _ = upstream.log[-1]
        assert messages[0] == {"role": "system", "content": "Be careful and reason step by step."}
        assert messages[-1] == {"role": "user", "content": "What is question number 5?"}
        content = resp.choices[0].message.content
        extra = (resp.model_extra or {})["iapo"]
        assert extra["arm"] == "careful@3" and extra["n"] == 3
        assert content is not None and content.endswith(f"The answer is {extra['answer']}")
        assert resp.object == "chat.completion" and resp.model == CTX
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None
        assert resp.usage.completion_tokens == upstream.completion_tokens_served
        assert resp.usage.prompt_tokens == upstream.prompt_tokens_served
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
        with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health") as r:
            assert json.load(r)["status"] == "ok"


def test_streaming_yields_chunks_that_join_to_the_answer(learned: Path, tmp_path: Path) -> None:
    question = "What is question number 7?"
    with FakeOpenAIServer(fixed) as srv:
        policy = make_policy(learned, tmp_path, srv.base_url, n=3)
        expected = fixed([{"role": "user", "content": question}], {}, 0)
        with PolicyServer(policy, port=0) as server:
            client = sdk(server)
            chunks = list(client.chat.completions.create(**ask(question), stream=True))
            assert srv.completions_served == 3  # the N samples were drawn, then streamed
            assert len(chunks) >= 4 and {c.object for c in chunks} == {"chat.completion.chunk"}
            assert len({c.id for c in chunks}) == 1
            assert chunks[0].choices[0].delta.role == "assistant"
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
            assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
            assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
            assert all(c.usage is None for c in chunks)
            # usage as one more chunk, without choices, when asked for
            opts = {"include_usage": True}
            chunks = list(
                client.chat.completions.create(**ask(question), stream=True, stream_options=opts)
            )
            assert chunks[-1].choices == [] and chunks[-1].usage is not None
            assert chunks[-1].usage.completion_tokens > 0
            assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == expected
            # on the wire: server-sent events, the last one [DONE]
            events = _raw_events(server, ask(question, stream=True))
            assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
            assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])
            # the non-streamed answer is the same text
            resp = client.chat.completions.create(**ask(question))
            assert resp.choices[0].message.content == expected


def _raw_events(server: PolicyServer, body: dict[str, Any]) -> list[str]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(
        "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream")
    text = resp.read().decode()
    conn.close()
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks), text
    return [b.removeprefix("data: ") for b in blocks]


@given(st.text(alphabet=st.sampled_from("ab \n\t\u00a0é"), max_size=40))
def test_split_text_joins_back_exactly(text: str) -> None:
    pieces = split_text(text)
    assert "".join(pieces) == text
    assert all(p for p in pieces)


def test_system_messages_and_list_content(learned: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(fixed) as srv:
        policy = make_policy(learned, tmp_path, srv.base_url, n=1)
        with PolicyServer(policy, port=0) as server:
            client = sdk(server)
            resp = client.chat.completions.create(
                model=CTX,
                messages=[
                    {"role": "system", "content": "Answer in digits."},
                    {"role": "user", "content": "an earlier turn, not used"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is"},
                            {"type": "text", "text": "question number 2?"},
                        ],
                    },
                ],
            )
            messages, _, _ = srv.log[-1]
            # the arm's own system message first; the caller's instructions before the question
            assert messages == [
                {"role": "system", "content": "Be careful and reason step by step."},
                {
                    "role": "user",
                    "content": "Answer in digits.\n\nBe brief.\n\nWhat is\nquestion number 2?",
                },
            ]
            assert "[{" not in (resp.choices[0].message.content or "")  # no Python repr
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(
                    model=CTX,
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "What is in it?"},
                                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                            ],
                        }
                    ],
                )
            err = caught.value.body
            assert isinstance(err, dict) and err["param"] == "messages[0].content[1].type"
            assert "image_url" in err["message"] and err["type"] == "invalid_request_error"
            assert srv.requests == 1  # refused before anything went upstream


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"model": CTX, "messages": []}).encode(), "messages"),
        (json.dumps({"model": CTX, "messages": [{"role": "system", "content": "x"}]}), "messages"),
        (json.dumps(ask("q", n=2)), "n"),
        (json.dumps(ask("q", stream="yes")), "stream"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}]}), "model"),
        (json.dumps({"model": CTX, "messages": [{"role": "robot", "content": "q"}]}), None),
        (json.dumps({"model": CTX, "messages": [{"role": "user", "content": 5}]}), None),
    ],
)
def test_bad_requests_are_400_in_the_openai_shape(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer, body: bytes | str, param: str | None
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url)
    with PolicyServer(policy, port=0) as server:
        status, err = _post(server, body if isinstance(body, bytes) else body.encode())
    assert status == 400, err
    assert set(err["error"]) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["error"]["param"] == param
    assert upstream.requests == 0


def _post(
    server: PolicyServer, body: bytes, path: str = "/v1/chat/completions", **headers: str
) -> tuple[int, dict[str, Any]]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("POST", path, body, {"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def test_unknown_context_and_route_are_404(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url)
    with PolicyServer(policy, port=0) as server:
        client = sdk(server)
        for stream in (False, True):
            with pytest.raises(openai.NotFoundError) as caught:
                client.chat.completions.create(
                    model="no-such", messages=[{"role": "user", "content": "q"}], stream=stream
                )
            body = caught.value.body
            assert isinstance(body, dict) and body["code"] == "model_not_found"
            assert CTX in body["message"]
        status, err = _post(server, b"{}", "/v1/embeddings")
        assert status == 404 and err["error"]["type"] == "invalid_request_error"
    assert upstream.requests == 0


def test_bearer_auth(learned: Path, tmp_path: Path, upstream: FakeOpenAIServer) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url, n=1)
    with PolicyServer(policy, port=0, api_key="s3cret-key") as server:
        for wrong in ("unused", "s3cret-ke", "s3cret-key-and-more"):
            with pytest.raises(openai.AuthenticationError) as caught:
                sdk(server, wrong).chat.completions.create(**ask("What is question number 1?"))
            assert caught.value.status_code == 401
            assert "s3cret" not in caught.value.message
            with pytest.raises(openai.AuthenticationError):
                sdk(server, wrong).models.list()
        status, _ = _post(server, json.dumps(ask("q")).encode())  # no header at all
        assert status == 401
        assert upstream.requests == 0
        good = sdk(server, "s3cret-key")
        resp = good.chat.completions.create(**ask("What is question number 1?"))
        assert resp.choices[0].message.content and upstream.requests == 1
        assert {m.id for m in good.models.list().data} == set(policy.arms)
        with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health") as r:
            assert r.status == 200  # health checks need no key


def test_an_open_address_without_a_key_warns(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url)
    with pytest.warns(ServeWarning, match="without an API key"):
        PolicyServer(policy, "0.0.0.0", 0).socket.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ServeWarning)
        PolicyServer(policy, "0.0.0.0", 0, api_key="k").socket.close()
        PolicyServer(policy, "127.0.0.1", 0).socket.close()


def test_a_body_over_the_limit_is_413(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url, n=1)
    with PolicyServer(policy, port=0, max_body=4096) as server:
        client = sdk(server)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**ask("x" * 5_000_000))
        assert caught.value.status_code == 413
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["code"] == "request_too_large"
        # without a Content-Length (chunked), cut off as it streams in
        host, port = server.address
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=iter([json.dumps(ask("y" * 3000)).encode()] * 3),
            encode_chunked=True,
        )
        assert conn.getresponse().status == 413
        conn.close()
        assert upstream.requests == 0
        ok = client.chat.completions.create(**ask("z" * 3000))  # under the limit
        assert ok.choices[0].message.content


def test_a_slow_upstream_is_504_at_the_deadline(learned: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(script, latency=3.0) as srv:
        policy = make_policy(learned, tmp_path, srv.base_url, n=1)
        with PolicyServer(policy, port=0, timeout=0.3) as server:
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as caught:
                    sdk(server).chat.completions.create(
                        **ask("What is question number 4?"), stream=stream
                    )
                assert caught.value.status_code == 504
                assert isinstance(caught.value.body, dict)
                assert caught.value.body["type"] == "timeout"


def test_a_body_that_does_not_arrive_in_time_is_408(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url, n=1)
    with PolicyServer(policy, port=0, timeout=0.3) as server:
        conn = http.client.HTTPConnection(*server.address, timeout=30)
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "100")
        conn.endheaders(b'{"model"')  # and nothing more
        resp = conn.getresponse()
        assert resp.status == 408
        assert json.loads(resp.read())["error"]["type"] == "invalid_request_error"
        conn.close()
    assert upstream.requests == 0


@pytest.mark.parametrize("kind", ["transient", "permanent"])
def test_an_upstream_failure_is_502(learned: Path, tmp_path: Path, kind: str) -> None:
    fake = (
        FakeOpenAIServer(script, faults=FaultPlan(rate=1.0, kinds=["500"]))
        if kind == "transient"
        else FakeOpenAIServer(script, permanent="403")
    )
    with fake as srv:
        policy = make_policy(learned, tmp_path, srv.base_url, n=1)
        with PolicyServer(policy, port=0) as server, pytest.raises(openai.APIStatusError) as caught:
            sdk(server).chat.completions.create(**ask("What is question number 4?"))
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "upstream_error"
    assert ("HTTP 500" if kind == "transient" else "HTTP 403") in body["message"]


def test_concurrency_is_enforced_across_all_requests(
    learned: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """64 clients at once, the arm's 3 samples fanned out: every answer right, never more than
    the configured 4 requests at the upstream endpoint, nothing logged as an error."""
    caplog.set_level(logging.WARNING)
    with FakeOpenAIServer(fixed, latency=0.02) as srv:
        policy = make_policy(learned, tmp_path, srv.base_url, n=3, concurrency=4, n_mode="fanout")
        with PolicyServer(policy, port=0) as server:

            async def load() -> list[str | None]:
                client = openai.AsyncOpenAI(
                    base_url=server.base_url, api_key="x", max_retries=0, timeout=120
                )
                async with client:
                    answers = await asyncio.gather(
                        *(
                            client.chat.completions.create(**ask(f"What is question {i}?"))
                            for i in range(64)
                        )
                    )
                return [a.choices[0].message.content for a in answers]

            contents = asyncio.run(load())
    assert contents == [fixed([{"content": f"What is question {i}?"}], {}, 0) for i in range(64)]
    assert srv.requests == srv.completions_served == 64 * 3
    assert srv.max_in_flight <= 4
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_ad_hoc_questions_are_kept_in_a_bounded_cache(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url, n=1, max_questions=8)
    backend = policy.backend
    assert backend is not None
    known = len(getattr(backend, "queries"))  # noqa: B009 - the live backend's registry
    with PolicyServer(policy, port=0) as server:
        client = sdk(server)
        for i in range(40):
            client.chat.completions.create(**ask(f"What is question number {i}?"))
            assert len(policy.questions) <= 8
        assert policy.questions.ids_made <= 8
        assert len(getattr(backend, "queries")) - known <= 8  # noqa: B009
        # an evicted question, asked again, is asked as itself
        client.chat.completions.create(**ask("What is question number 0?"))
        assert upstream.log[-1][0][-1]["content"] == "What is question number 0?"


def test_the_server_stops_and_frees_its_port(
    learned: Path, tmp_path: Path, upstream: FakeOpenAIServer
) -> None:
    policy = make_policy(learned, tmp_path, upstream.base_url, n=1)
    server = PolicyServer(policy, port=0).start()
    port = server.address[1]
    sdk(server).chat.completions.create(**ask("What is question number 1?"))
    server.stop()
    again = PolicyServer(policy, port=port)  # the same port binds again
    again.socket.close()


def test_the_cli_serves_with_its_flags_until_interrupted(learned: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(fixed, latency=0.02) as srv:
        make_policy(learned, tmp_path / "policy", srv.base_url, n=1)
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SERVE_TEST_KEY": "k-123"}
        cmd = [sys.executable, "-m", "iapo.cli", "serve", str(tmp_path / "policy"), "--port", "0"]
        cmd += ["--concurrency", "2", "--api-key-env", "SERVE_TEST_KEY", "--max-body", "2000"]
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            found = re.search(r" at (http://127\.0\.0\.1:\d+/v1) ", line)
            assert found and "at most 2 requests upstream" in line and "key required" in line, line
            url = found.group(1)
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=url, api_key="k-12", max_retries=0).models.list()
            with pytest.raises(openai.APIStatusError, match="2000 bytes"):
                openai.OpenAI(base_url=url, api_key="k-123", max_retries=0).chat.completions.create(
                    **ask("x" * 3000)
                )

            async def load() -> list[str | None]:
                client = openai.AsyncOpenAI(base_url=url, api_key="k-123", max_retries=0)
                async with client:
                    answers = await asyncio.gather(
                        *(client.chat.completions.create(**ask(f"Q{i}?")) for i in range(16))
                    )
                return [a.choices[0].message.content for a in answers]

            contents = asyncio.run(load())
            assert contents == [fixed([{"content": f"Q{i}?"}], {}, 0) for i in range(16)]
            assert srv.max_in_flight <= 2  # --concurrency over the config's 4
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def _one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("iapo: error: ")
    return err


def test_the_cli_refuses_a_missing_key_and_a_replayed_policy(
    learned: Path, finished_mcqa: Done, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("SERVE_TEST_NO_KEY", raising=False)
    err = _one_line_error(
        capsys, "serve", str(learned), "--port", "0", "--api-key-env", "SERVE_TEST_NO_KEY"
    )
    assert "--api-key-env" in err and "SERVE_TEST_NO_KEY" in err
    err = _one_line_error(capsys, "serve", str(finished_mcqa.run_dir), "--port", "0")
    assert "replaying" in err and "backend" in err
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` fails: not installed
    err = _one_line_error(capsys, "serve", str(learned), "--port", "0")
    assert "pip install 'iapo[serve]'" in err


@given(
    st.integers(1, 4),
    st.lists(st.tuples(st.booleans(), st.integers(0, 7)), max_size=60),
)
def test_the_question_cache_is_an_lru_that_never_evicts_a_question_in_use(
    size: int, ops: list[tuple[bool, int]]
) -> None:
    """Against a brute-force LRU: the same questions kept, in use ones never evicted, distinct
    questions never share an id, and no more ids than ``size`` plus those in use at once."""
    slots = _QuestionSlots(size)
    order: list[str] = []  # least recently asked first
    held: list[tuple[str, str]] = []  # (question, id) in use
    ids: dict[str, str] = {}
    most_held = 0
    for take, k in ops:
        if take or not held:
            q = f"q{k}"
            qid, fresh = slots.take((q, ()))
            assert fresh == (q not in order)
            if q in order:
                order.remove(q)
                assert ids[q] == qid
            elif len(order) >= size:
                busy = {h for h, _ in held}
                victim = next((o for o in order if o not in busy), None)
                if victim is not None:
                    order.remove(victim)
                    del ids[victim]
            order.append(q)
            ids[q] = qid
            held.append((q, qid))
            most_held = max(most_held, len(held))
        else:
            _, qid = held.pop(k % len(held))
            slots.give(qid)
        assert len(slots) == len(order)
        assert len(set(ids.values())) == len(ids)  # no two questions under one id
        assert all(q in ids for q, _ in held)  # in use: still registered
    assert slots.ids_made <= size + most_held


class _Broken(Backend):
    """A backend with a bug: every draw raises."""

    def cache_key(self, prompt: str, query: str) -> str:
        return prompt + query

    def add_query(self, query: Query) -> None:
        pass

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        raise RuntimeError("a bug in the backend")


def test_a_bug_is_a_logged_500_and_the_server_goes_on(
    learned: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    policy = Policy.load(learned, backend=_Broken())
    with PolicyServer(policy, port=0) as server:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as caught:
                sdk(server).chat.completions.create(**ask("What is question number 1?"))
            assert isinstance(caught.value.body, dict)
            assert caught.value.body["type"] == "server_error"
            assert "bug in the backend" not in caught.value.message  # no internals to clients
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 2 and all(r.exc_info for r in logged)


def test_one_permanent_upstream_error_does_not_stop_the_server(
    learned: Path, tmp_path: Path
) -> None:
    with FakeOpenAIServer(script, permanent="400") as srv:
        policy = make_policy(learned, tmp_path, srv.base_url, n=1)
        with PolicyServer(policy, port=0) as server:
            client = sdk(server)
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(**ask("What is question number 1?"))
            srv.permanent = None  # the endpoint answers again
            resp = client.chat.completions.create(**ask("What is question number 2?"))
    assert resp.choices[0].message.content
