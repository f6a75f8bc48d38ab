"""Live runs end to end against the project's own OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Done
from live_helpers import script, write_config

import iapo
from iapo.bank import open_bank
from iapo.cli import main
from iapo.deploy import Policy
from iapo.serve import PolicyServer
from iapo.testing.fake_openai import FakeOpenAIServer


def test_live_run_caches_every_completion_and_rerun_requests_nothing(
    tmp_path: Path, secret: str
) -> None:
    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        first = iapo.run(cfg)
        served = srv.completions_served
        assert served == first.account["drawn"] == first.account["completions"]
        assert first.account["completions"] <= 240
        # the careful prompt wins where cost does not matter
        assert first.policy["accuracy=1,cost=0"]["prompt"] == "careful"
        requests_before = srv.requests
        second = iapo.run(cfg)
        assert srv.requests == requests_before
        assert second.account["drawn"] == 0
        assert second.policy == first.policy
        assert first.account["completion_tokens"] > 0
        # the key never reaches anything the run wrote
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_policy_ask_and_openai_compatible_proxy(tmp_path: Path, secret: str) -> None:
    import openai

    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(tmp_path, srv.base_url)
        result = iapo.run(cfg)
        policy = Policy.load(tmp_path / "run")
        ctx = "accuracy=1,cost=0"
        arm = policy.arm(ctx)
        before = srv.completions_served
        ans = policy.ask("What is question number 99?", ctx)
        assert srv.completions_served - before == arm.n == len(ans.samples)
        assert ans.answer is not None and ans.text is not None and ans.text.endswith(ans.answer)
        assert ans.cost == pytest.approx(sum(s.cost for s in ans.samples))
        with PolicyServer(policy, port=0) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="unused")
            models = {m.id for m in client.models.list().data}
            assert models == set(result.policy)
            served = srv.completions_served
            resp = client.chat.completions.create(
                model=ctx, messages=[{"role": "user", "content": "What is question number 5?"}]
            )
            assert srv.completions_served - served == arm.n  # the context's arm, N samples
            content = resp.choices[0].message.content
            assert content and re.fullmatch(r"Thinking( step)+\. The answer is \d+", content)
            chosen = (resp.model_extra or {})["iapo"]
            assert chosen["arm"] == str(arm) and content.endswith(f" {chosen['answer']}")
            assert resp.usage is not None and resp.usage.completion_tokens > 0
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(
                    model="no-such-context", messages=[{"role": "user", "content": "x"}]
                )


def test_ask_cli_on_replay_policy_says_a_backend_is_needed(
    finished_mcqa: Done, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["ask", str(finished_mcqa.run_dir), "2+2?", "--context", "accuracy=1,cost=0"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("iapo: error: ") and err.count("\n") == 1
    assert "live backend" in err


def test_api_key_in_config_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9/v1")
    cfg.write_text(cfg.read_text().replace("model: fake-model", "model: m\n  api_key: sk-x"))
    with pytest.raises(iapo.InputError, match="never write an API key"):
        iapo.setup(cfg)


def test_live_best_of_n_with_scorers(tmp_path: Path, secret: str) -> None:
    with FakeOpenAIServer(script, api_key=secret) as srv:
        cfg = write_config(
            tmp_path, srv.base_url, budget=600, backend_extra="  seed_per_sample: true"
        )
        text = cfg.read_text().replace("strategy: majority_vote", "strategy: best_of_n")
        text = text.replace(
            "contexts:\n  grid:\n    cost_weight: [0.0, 0.5]",
            "scorers: {correct: exact_match, consistency: agreement}\n"
            "contexts:\n  grid:\n    weights: {correct: [0.5, 1.0]}\n    complement: consistency\n"
            "    cost_weight: [0.0, 0.5]",
        )
        cfg.write_text(text)
        result = iapo.run(cfg)
        assert result.strategy == "best_of_n"
        assert set(result.policy) == {
            f"correct={w:g},consistency={1 - w:g},cost={c:g}" for w in (0.5, 1) for c in (0, 0.5)
        }
        # the verifier-heavy, cost-free context keeps the careful prompt
        assert result.policy["correct=1,consistency=0,cost=0"]["prompt"] == "careful"
        with open_bank(f"sqlite:///{tmp_path / 'run' / 'bank.sqlite'}") as bank:
            rows = bank._db.execute("SELECT scores FROM samples LIMIT 20").fetchall()
        scores = [json.loads(r[0]) for r in rows]
        assert all(set(s) == {"correct", "consistency"} for s in scores)
        assert {s["correct"] for s in scores} <= {0.0, 1.0}
