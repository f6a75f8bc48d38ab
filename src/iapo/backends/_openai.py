"""Live completions from an OpenAI-compatible chat endpoint as scored samples.

:class:`LLMBackend` turns the completions of an :class:`~iapo.chat_client.OpenAIChatClient` into
scored :class:`~iapo.types.Sample` objects for (prompt id, query id) pairs and names each
sampling distribution with a cache key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from iapo.aio import gather_or_cancel
from iapo.backends._base import KEY_SCHEMA, Backend, OnSamples, stable_key
from iapo.chat_client import RESERVED_PARAMS, Completion, OpenAIChatClient
from iapo.errors import PermanentBackendError
from iapo.scorers import Scorer, as_scorer, score_texts
from iapo.types import PromptSpec, Query, Sample

__all__ = ["LLMBackend"]


def _callable_id(fn: object) -> str:
    """``fn.id`` if it has one, else its qualified name (a ``partial`` with its arguments)."""
    ident = getattr(fn, "id", None)
    if isinstance(ident, str) and ident:
        return ident
    if isinstance(fn, functools.partial):
        kw = sorted(fn.keywords.items())
        return f"partial({_callable_id(fn.func)}, {fn.args!r}, {kw!r})"
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def _index_seed(cache_key: str, index: int) -> int:
    """The sampling seed of completion ``index`` of a distribution: distinct per index (so the
    samples stay i.i.d.), the same on every request for that index (so a re-request after a crash
    reproduces it on endpoints that honour ``seed``)."""
    digest = hashlib.blake2b(f"{cache_key}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _default_cost(c: Completion) -> float:
    return float(c.billed_completion_tokens)


class LLMBackend(Backend):
    """Samples from a live OpenAI-compatible model for (prompt id, query id).

    ``params`` are the sampling parameters sent with every request (``temperature``, ``top_p``,
    ``max_tokens``, …; anything the endpoint accepts, e.g. vLLM's ``top_k``). ``seed`` is refused:
    a fixed seed makes fan-out requests return the same completion again and again, which would
    collapse the i.i.d. samples the estimators assume. ``extract`` reads a completion's answer
    (an :class:`iapo.answers.Extractor` or any callable; its ``id`` attribute, else its qualified
    name, goes into the cache key); ``scorers`` map objective names to
    :class:`iapo.scorers.Scorer` objects (scoring all completions of one ``sample`` call at once)
    or plain ``scorer(text, query) -> float`` callables;
    ``scorer_ids`` override the scorers' ids in the key. ``cost`` turns a completion into the run's
    cost unit (default: its completion tokens, ``max_tokens`` if the endpoint did not report them
    usably: see :mod:`iapo.chat_client` on untrusted usage); it is not
    in the cache key, since each sample's ``usage`` is stored and costs can be recomputed from it.
    ``seed_per_sample`` sends each completion in its own request with a seed derived from (cache
    key, sample index): reproducible on endpoints that honour ``seed`` (vLLM, llama.cpp), still
    i.i.d. across indices; the prompt is then billed once per completion.
    """

    def __init__(
        self,
        client: OpenAIChatClient,
        prompts: Mapping[str, PromptSpec],
        queries: Mapping[str, Query],
        *,
        params: Mapping[str, Any],
        extract: Callable[[str], str | None],
        scorers: Mapping[str, Scorer | Callable[[str, Query], float]] | None = None,
        cost: Callable[[Completion], float] | None = None,
        scorer_ids: Mapping[str, str] | None = None,
        seed_per_sample: bool = False,
    ) -> None:
        bad = (RESERVED_PARAMS | {"seed"}).intersection(params)
        if bad:
            raise ValueError(
                f"params may not set {sorted(bad)}: model/messages/n are set per request, and a "
                "fixed seed would make the N samples identical instead of i.i.d."
            )
        try:
            json.dumps(dict(params), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be JSON-serialisable: {exc}") from None
        self.client = client
        self.seed_per_sample = seed_per_sample
        self.prompts = dict(prompts)
        self.queries = dict(queries)
        self.params = dict(params)
        self.extract = extract
        self.cost = cost or _default_cost
        self._extractor_id = _callable_id(extract)
        self.set_scorers(scorers or {}, scorer_ids)
        self.name = f"openai({client.model})"

    def set_scorers(
        self,
        scorers: Mapping[str, Callable[[str, Query], float] | Scorer],
        scorer_ids: Mapping[str, str] | None = None,
    ) -> None:
        """Score every completion with ``scorers`` (objective name → scorer); their ids go into
        the cache key, so samples scored otherwise are never reused."""
        self.scorers = dict(scorers)
        ids = dict(scorer_ids or {})
        self._scorer_ids = {
            name: ids.get(name, _callable_id(fn)) for name, fn in self.scorers.items()
        }
        # plain ``fn(text, query)`` callables are wrapped; every scorer scores a pull at once
        self._scorers: dict[str, Scorer] = {
            name: as_scorer(fn, self._scorer_ids[name]) for name, fn in self.scorers.items()
        }

    def _lookup(self, prompt: str, query: str) -> tuple[PromptSpec, Query]:
        try:
            return self.prompts[prompt], self.queries[query]
        except KeyError as exc:
            raise PermanentBackendError(
                f"{self.name}: unknown prompt or query id {exc.args[0]!r}"
            ) from None

    def cache_key(self, prompt: str, query: str) -> str:
        spec, q = self._lookup(prompt, query)
        return stable_key(
            [
                KEY_SCHEMA,
                "openai",
                self.client.model,
                spec.render(q),
                self.params,
                {"extract": self._extractor_id, "scorers": self._scorer_ids},
            ]
        )

    async def sample(self, prompt: str, query: str, indices: Sequence[int]) -> list[Sample]:
        return await self.sample_each(prompt, query, indices, None)

    async def sample_each(
        self, prompt: str, query: str, indices: Sequence[int], on_samples: OnSamples | None
    ) -> list[Sample]:
        """:meth:`sample`, telling ``on_samples`` of each completion as it lands: with one request
        per completion (``seed_per_sample``, or a client that fans out) each is scored and
        reported when its request returns, so a kill loses none that already arrived."""
        spec, q = self._lookup(prompt, query)
        if not indices:
            return []
        messages = spec.render(q)
        one_by_one = self.seed_per_sample or (
            len(indices) > 1 and (self.client.n_mode == "fanout" or self.client.native_n is False)
        )
        if not one_by_one:
            completions = await self.client.complete(messages, len(indices), self.params)
            out = await self._score(completions, q)
            if on_samples is not None and len(out) == len(indices):
                await on_samples(list(zip(indices, out, strict=True)))
            return out
        key = self.cache_key(prompt, query) if self.seed_per_sample else ""

        async def one(i: int) -> Sample:
            params = {**self.params, "seed": _index_seed(key, i)} if key else self.params
            (s,) = await self._score(await self.client.complete(messages, 1, params), q)
            if on_samples is not None:
                await on_samples([(i, s)])
            return s

        return list(await gather_or_cancel([one(i) for i in indices]))

    async def _score(self, completions: Sequence[Completion], q: Query) -> list[Sample]:
        scores = await score_texts(self._scorers, [c.text or "" for c in completions], q)
        out = []
        for i, c in enumerate(completions):
            usage = {
                k: v
                for k, v in (
                    ("prompt_tokens", c.prompt_tokens),
                    ("completion_tokens", c.completion_tokens),
                )
                if v is not None
            }
            out.append(
                Sample(
                    answer=self.extract(c.text) if c.text is not None else None,
                    scores={name: values[i] for name, values in scores.items()},
                    cost=float(self.cost(c)),
                    text=c.text,
                    usage=usage,
                )
            )
        return out

    def max_cost(self, prompt: str, query: str) -> float | None:
        """Bounded when ``max_tokens`` is set: the completion cannot be longer, and the prompt has
        at most one token per character of its rendered messages."""
        max_tokens = self.params.get("max_tokens", self.params.get("max_completion_tokens"))
        if not isinstance(max_tokens, int):
            return None
        spec, q = self._lookup(prompt, query)
        chars = sum(len(m["content"]) + 16 for m in spec.render(q))
        return float(self.cost(Completion(None, None, chars, max_tokens)))

    def recost(self, sample: Sample) -> Sample:
        if not sample.usage:
            return sample
        usage = Completion(
            None,
            None,
            sample.usage.get("prompt_tokens"),
            sample.usage.get("completion_tokens"),
            completion_bound=self._max_tokens(),
        )
        return replace(sample, cost=float(self.cost(usage)))

    def _max_tokens(self) -> int | None:
        value = self.params.get("max_tokens", self.params.get("max_completion_tokens"))
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return value if ok else None

    @property
    def anomalies(self) -> Mapping[str, int]:
        """What the endpoint did wrong so far, by kind (the client's count)."""
        return self.client.anomalies

    def gold(self, query: str) -> str | None:
        q = self.queries.get(query)
        return q.gold if q is not None else None

    @property
    def concurrency(self) -> int:
        """The client's bound on concurrent requests."""
        return self.client.concurrency

    def add_query(self, query: Query) -> None:
        """Answer ``query`` too (the prompts' templates must render it)."""
        self.queries[query.id] = query

    async def aclose(self) -> None:
        """Close the scorers' clients (an LLM judge has one) and this backend's client; both
        reopen on the next request, so a closed backend can still be used in a new loop."""
        for scorer in self._scorers.values():
            close = getattr(scorer, "aclose", None)
            if close is not None:
                await close()
        await self.client.aclose()
