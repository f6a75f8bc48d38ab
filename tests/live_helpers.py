"""Shared pieces of the live-backend tests: a scripted model and a config writer."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iapo.backends import OpenAIChatClient
from iapo.chat_client import HTTP_CLIENTS
from iapo.testing.fake_openai import FakeOpenAIServer


def gold_of(question: str) -> int:
    return 10 + int(hashlib.sha256(question.encode()).hexdigest(), 16) % 80


def script(messages: list[dict[str, Any]], params: dict[str, Any], draw: int) -> str:
    """Careful prompts are right 70 % of the time and verbose; terse ones 45 % and short."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    question = messages[-1]["content"]
    rng = random.Random(draw)
    careful = "careful" in system
    gold = gold_of(question)
    answer = gold if rng.random() < (0.7 if careful else 0.45) else gold + rng.choice([1, 2, 3])
    filler = " step" * (40 if careful else 3)
    return f"Thinking{filler}. The answer is {answer}"


def write_config(
    tmp: Path,
    base_url: str,
    *,
    budget: int = 240,
    extra: str = "",
    backend_extra: str = "",
    run_dir: str = "run",
) -> Path:
    queries = tmp / "queries.jsonl"
    with queries.open("w") as f:
        for i in range(12):
            q = f"What is question number {i}?"
            f.write(json.dumps({"id": f"q{i}", "question": q, "gold": str(gold_of(q))}) + "\n")
    cfg = tmp / "live.yaml"
    cfg.write_text(
        f"""
name: live
strategy: majority_vote
backend:
  kind: openai
  base_url: {base_url}
  model: fake-model
  api_key_env: IAPO_TEST_KEY
  concurrency: 4
  params: {{temperature: 0.7, max_tokens: 64}}
{backend_extra}
queries: queries.jsonl
prompts:
  - id: terse
    system: "Answer."
  - id: careful
    system: "Be careful and reason step by step."
n_max: 3
contexts:
  grid:
    cost_weight: [0.0, 0.5]
budget: {budget}
split: {{test_fraction: 0.25, seed: 0}}
seed: 3
run_dir: {tmp / run_dir}
{extra}
"""
    )
    return cfg


def fast_client(srv: FakeOpenAIServer, **kw: Any) -> OpenAIChatClient:
    """A client for the test server with tiny backoffs and timeouts."""
    kw.setdefault("backoff", 0.002)
    kw.setdefault("max_backoff", 0.01)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("api_key", "local")
    return OpenAIChatClient(srv.base_url, srv.model, **kw)


@pytest.fixture(params=[*HTTP_CLIENTS, "aiohttp-sdk"])
def each_http_client(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run the test once per HTTP stack under the SDK (the clients' default is switched), and
    once with aiohttp with every attempt through the SDK (no direct re-sends)."""
    kind = str(request.param)
    monkeypatch.setattr(OpenAIChatClient, "default_http_client", kind.removesuffix("-sdk"))
    monkeypatch.setattr(OpenAIChatClient, "direct", not kind.endswith("-sdk"))
    yield kind
