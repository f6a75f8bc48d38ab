"""``iapo serve`` with an adaptive arm (issue #15), over real loopback HTTP: the ``openai`` SDK as
the client, the project's FakeOpenAIServer upstream. The arm is executed as ``Policy.ask`` does
(batches with native ``n`` until the rule stops); ``usage`` and the ``iapo`` field say what was
drawn; streaming streams the voted answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from adaptive_helpers import CTX, Sequences, adaptive_policy, batches, categorical, text_of
from live_helpers import script, write_config

import iapo
from iapo.serve import PolicyServer
from iapo.testing.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("learned")
    with FakeOpenAIServer(script) as srv:
        iapo.run(write_config(tmp, srv.base_url))
    return tmp / "run"


def sdk(server: PolicyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)


def ask(question: str, **kw: Any) -> dict[str, Any]:
    return {"model": CTX, "messages": [{"role": "user", "content": question}], **kw}


def test_an_adaptive_arm_answers_with_the_samples_it_drew(learned: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(categorical(["7"], [1.0])) as srv:
        policy = adaptive_policy(learned, tmp_path, srv.base_url, n=10, adaptive="decided/b2")
        with PolicyServer(policy, port=0) as server:
            client = sdk(server)
            arms = {m.id: (m.model_extra or {})["arm"] for m in client.models.list().data}
            assert arms[CTX] == "careful@10~decided/b2"
            resp = client.chat.completions.create(**ask("What is 3 + 4?"))
            assert batches(srv.log) == [2, 2, 2]  # unanimous: decided after 6 of 10
            extra = (resp.model_extra or {})["iapo"]
            assert extra == {
                "arm": "careful@10~decided/b2",
                "n": 10,
                "adaptive": "decided/b2/n10",
                "samples_drawn": 6,
                "answer": "7",
                "cost": pytest.approx(extra["cost"]),
            }
            assert extra["cost"] > 0
            assert resp.choices[0].message.content == text_of("7")
            assert resp.usage is not None  # summed over the 6 drawn, as served upstream
            assert resp.usage.completion_tokens == srv.completion_tokens_served
            assert resp.usage.prompt_tokens == srv.prompt_tokens_served


def test_split_answers_draw_n_max_and_the_fixed_arm_says_n(learned: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(Sequences(lambda q: ["1", "2"] * 5)) as srv:
        policy = adaptive_policy(learned, tmp_path / "a", srv.base_url, n=4, adaptive="decided/b1")
        with PolicyServer(policy, port=0) as server:
            resp = sdk(server).chat.completions.create(**ask("Which?"))
            extra = (resp.model_extra or {})["iapo"]
            assert batches(srv.log) == [1, 1, 1, 1]
            assert extra["samples_drawn"] == 4 and extra["answer"] == "1"
    with FakeOpenAIServer(categorical(["7"], [1.0])) as srv:
        policy = adaptive_policy(learned, tmp_path / "f", srv.base_url, n=3, adaptive=None)
        with PolicyServer(policy, port=0) as server:
            resp = sdk(server).chat.completions.create(**ask("What is 3 + 4?"))
            extra = (resp.model_extra or {})["iapo"]
            assert "adaptive" not in extra and extra["n"] == extra["samples_drawn"] == 3
            assert batches(srv.log) == [3]


def test_streaming_an_adaptive_arm_streams_the_voted_answer(learned: Path, tmp_path: Path) -> None:
    # 5 6 5 (2–1, 4 left) | 5 5 6 (4–2, 1 left): decided/b3 of N=7 stops after 6
    table = ["5", "6", "5", "5", "5", "6"]
    with FakeOpenAIServer(Sequences(lambda q: table)) as srv:
        policy = adaptive_policy(learned, tmp_path, srv.base_url, n=7, adaptive="decided/b3")
        with PolicyServer(policy, port=0) as server:
            chunks = list(
                sdk(server).chat.completions.create(
                    **ask("Stream it"), stream=True, stream_options={"include_usage": True}
                )
            )
            assert batches(srv.log) == [3, 3]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == text_of("5")
            last = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
            extra = (last.model_extra or {})["iapo"]
            assert extra["samples_drawn"] == 6 and extra["adaptive"] == "decided/b3/n7"
            usage = chunks[-1].usage
            assert chunks[-1].choices == [] and usage is not None
            assert usage.completion_tokens == srv.completion_tokens_served
