"""Plain Python callables as scorers: wrapped objects (:func:`as_scorer`) and functions named by
import path (:func:`python`)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from iapo.errors import ConfigError
from iapo.scorers._base import Scorer
from iapo.types import Query

__all__ = ["CallableScorer", "as_scorer", "python"]


class CallableScorer:
    """A callable as a scorer: ``fn(text, query) -> float`` per text, or, with ``batch=True``,
    ``fn(texts, query) -> list[float]`` once per pull. Either may be ``async``."""

    def __init__(self, fn: Callable[..., Any], id: str, *, batch: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"scorer {id!r} is not callable")
        self.fn = fn
        self.id = id
        self.batch = batch

    def __repr__(self) -> str:
        return f"CallableScorer({self.id!r}, batch={self.batch})"

    @staticmethod
    async def _value(result: Any) -> Any:
        return await result if inspect.isawaitable(result) else result

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        if self.batch:
            out = await self._value(self.fn(list(texts), query))
            if isinstance(out, str | bytes) or not isinstance(out, Sequence):
                raise ValueError(f"batch scorer returned {type(out).__name__}, not a list")
            return list(out)
        return [await self._value(self.fn(t, query)) for t in texts]


def as_scorer(obj: Scorer | Callable[[str, Query], float], id: str | None = None) -> Scorer:
    """``obj`` if it is a :class:`Scorer`, else a per-text callable wrapped under ``id``."""
    if isinstance(obj, Scorer):
        return obj
    if not callable(obj):
        raise TypeError(f"not a scorer or a callable: {obj!r}")
    if id is None:
        module = getattr(obj, "__module__", None) or type(obj).__module__
        name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
        id = f"{module}.{name}"
    return CallableScorer(obj, id)


def python(path: str, *, batch: bool = False, version: str | None = None) -> CallableScorer:
    """The callable at ``"package.module:function"`` (importable from ``sys.path``).

    Per text ``fn(text, query) -> float``; with ``batch=True`` once per pull
    ``fn(texts, query) -> list[float]``; ``async`` functions are awaited. The id is
    ``python:<path>`` plus ``:<version>`` if given: iapo cannot see your function's code, so
    pass a new ``version`` whenever you change what it computes, or stale scores are reused.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"python scorer {path!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"python scorer {path!r}: cannot import {module_name!r}: {exc}") from None
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
    if not callable(fn):
        raise ConfigError(f"python scorer {path!r}: {attr!r} is not a callable in {module_name}")
    ident = f"python:{path}" + (f":{version}" if version is not None else "")
    return CallableScorer(fn, ident + (":batch" if batch else ""), batch=batch)
