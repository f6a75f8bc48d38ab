"""iapo.aio.run: uvloop where installed unless IAPO_UVLOOP=0, asyncio.run's semantics otherwise."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from iapo.aio import loop_factory, run


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_iapo_uvloop_0_keeps_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAPO_UVLOOP", "0")
    assert loop_factory() is None
    assert run(_loop_module()).startswith("asyncio")


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="pip install uvloop")
def test_uvloop_by_default_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IAPO_UVLOOP", raising=False)
    assert run(_loop_module()).startswith("uvloop")


def test_run_returns_and_raises_like_asyncio_run() -> None:
    async def boom() -> None:
        raise KeyError("x")

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    assert run(value()) == 7
    with pytest.raises(KeyError):
        run(boom())
