"""Scorers: the objectives a Best-of-N aggregate maximises, one float per completion.

A :class:`Scorer` has a stable, versioned ``id`` (it goes into the live backend's cache key, so
changing how completions are scored never reuses scores stored under another scoring) and an
``async score(texts, query)`` that scores *all* completions of one pull at once and returns one
finite float per text, in order. Plain callables ``fn(text, query) -> float`` still work:
:func:`as_scorer` wraps them.

=================  =====================================================  ======================
scorer             what it measures                                       strength
=================  =====================================================  ======================
``exact_match``    extracted answer == the query's gold (normalised)      a real verifier
``python``         whatever your function computes                        yours to judge
``http``           whatever your endpoint computes                        yours to judge
``judge``          an LLM's rating against a rubric                       a model's opinion
``profanity``      1 − P(offensive) from a bag-of-words classifier        **weak proxy**
``agreement``      share of the other samples with the same answer       **weak proxy**
=================  =====================================================  ======================

Weak proxies, plainly: ``profanity`` is a harmlessness proxy only: a linear bag-of-words model of
offensive *language*; it misses harmful content written politely and flags harmless text that
quotes a swear word. ``agreement`` is self-consistency, not correctness: a model that is
consistently wrong agrees with itself. An LLM ``judge`` is only as good as the judge model and
the rubric, and favours long, confident answers.

``agreement`` also breaks an assumption of the estimators: a sample's score depends on the other
completions of the pull it was drawn in (its size and contents), so the scores are not i.i.d.
per-sample values, and samples from pulls of different N are not exchangeable. The U-statistic
estimate of a Best-of-N utility is exact only for per-sample scores; with ``agreement`` it is an
approximation (and reusing stored samples across pulls of another size mixes scores computed
against different neighbours).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from iapo.aio import gather_or_cancel
from iapo.answers import Extractor, get_extractor, normalize_number, normalize_text
from iapo.chat_client import OpenAIChatClient, public_url
from iapo.errors import BackendError, ConfigError, PermanentBackendError, TransientBackendError
from iapo.types import Query

__all__ = [
    "SCORER_KINDS",
    "AgreementScorer",
    "CallableScorer",
    "ExactMatchScorer",
    "HttpScorer",
    "JudgeScorer",
    "ProfanityScorer",
    "Scorer",
    "agreement",
    "as_scorer",
    "build_scorers",
    "exact_match",
    "http",
    "judge",
    "profanity",
    "python",
    "score_texts",
]

#: The pip requirement of the ``profanity`` scorer (it pulls in scikit-learn).
PROFANITY_REQUIREMENT = "alt-profanity-check>=1.5"


@runtime_checkable
class Scorer(Protocol):
    """Scores every completion of one pull: ``await scorer.score(texts, query)`` → one float each.

    ``id`` names the scoring in cache keys; change it (bump its ``@N`` suffix) whenever the
    scores would change.
    """

    @property
    def id(self) -> str: ...

    async def score(self, texts: Sequence[str], query: Query) -> list[float]: ...


def _norm_answer(answer: str | None) -> str | None:
    """Numbers by :func:`normalize_number` (``"1,000"`` == ``"1000.0"``), else casefolded text."""
    if answer is None:
        return None
    num = normalize_number(answer)
    return num if num is not None else normalize_text(answer)


def _short_hash(payload: object) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Plain callables


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


async def _run_one(name: str, scorer: Scorer, texts: Sequence[str], query: Query) -> list[float]:
    where = f"scorer {name!r} ({scorer.id}) on query {query.id!r}"
    try:
        raw = await scorer.score(texts, query)
    except BackendError:
        raise  # a misconfigured or failing endpoint says so itself
    except Exception as exc:
        raise ValueError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    if len(raw) != len(texts):
        raise ValueError(f"{where} returned {len(raw)} scores for {len(texts)} texts")
    out = []
    for i, value in enumerate(raw):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: score {i} is not a number: {value!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"{where}: score {i} is not finite: {x}")
        out.append(x)
    return out


async def score_texts(
    scorers: Mapping[str, Scorer], texts: Sequence[str], query: Query
) -> dict[str, list[float]]:
    """Every scorer on all ``texts`` of one pull, concurrently: ``{name: [score per text]}``.

    Raises ``ValueError`` naming the scorer (an exception, a wrong count, a non-finite score) or
    the scorer's own :class:`~iapo.errors.BackendError`; the other scorers are then cancelled.
    """
    if not scorers or not texts:
        return {name: [] for name in scorers}
    names = list(scorers)
    results = await gather_or_cancel(_run_one(n, scorers[n], texts, query) for n in names)
    return dict(zip(names, results, strict=True))


# --------------------------------------------------------------------------------------------
# exact match and agreement


class ExactMatchScorer:
    """1.0 if the extracted answer equals the query's gold after normalisation, else 0.0.

    Numbers compare by value spelling (``"1,000"`` == ``"1000.0"``), anything else casefolded
    with whitespace collapsed. An abstention (nothing extracted) scores 0.0. A query without gold
    raises ``ValueError``: this is a verifier, and there is nothing to verify against.
    """

    def __init__(self, extract: Extractor) -> None:
        self.extract = extract
        self.id = f"exact_match({extract.id})@1"

    def __repr__(self) -> str:
        return f"ExactMatchScorer({self.extract.id!r})"

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        gold = _norm_answer(query.gold)
        if gold is None:
            raise ValueError(f"query {query.id!r} has no gold answer to match against")
        return [1.0 if _norm_answer(self.extract(t)) == gold else 0.0 for t in texts]


def exact_match(extract: Extractor | str | Mapping[str, Any]) -> ExactMatchScorer:
    """A verifier: does the answer ``extract`` reads match the query's gold? (see the class)."""
    return ExactMatchScorer(get_extractor(extract))


class AgreementScorer:
    """For each completion, the fraction of the *other* completions of the same pull whose
    extracted answer equals its own (normalised as in :class:`ExactMatchScorer`).

    0.0 for an abstention and for a pull of one completion. A **weak proxy**: self-consistency,
    not correctness. Its scores depend on the pull they were drawn in, so they are not i.i.d.
    across pulls of different N (see the module doc on the U-statistic).
    """

    def __init__(self, extract: Extractor) -> None:
        self.extract = extract
        self.id = f"agreement({extract.id})@1"

    def __repr__(self) -> str:
        return f"AgreementScorer({self.extract.id!r})"

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        answers = [_norm_answer(self.extract(t)) for t in texts]
        others = len(answers) - 1
        out = []
        for a in answers:
            if a is None or others == 0:
                out.append(0.0)
            else:
                out.append((sum(1 for b in answers if b == a) - 1) / others)
        return out


def agreement(extract: Extractor | str | Mapping[str, Any]) -> AgreementScorer:
    """Self-consistency within a pull; a weak proxy (see :class:`AgreementScorer`)."""
    return AgreementScorer(get_extractor(extract))


# --------------------------------------------------------------------------------------------
# python


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


# --------------------------------------------------------------------------------------------
# http


class HttpScorer:
    """Scores from your HTTP endpoint, one POST per pull. The contract:

    request (``Content-Type: application/json``)::

        {"texts": ["completion 1", ...], "query": {"id": "q1", "text": "...", "gold": "42"|null}}

    response (HTTP 200, JSON)::

        {"scores": [0.7, ...]}                    # one number per text, in order, or
        {"scores": [{"score": 0.7, ...}, ...]}    # one object per text; ``field`` is read

    5xx answers, timeouts and broken connections are retried (``max_attempts`` in all, with
    exponential backoff from ``backoff`` seconds); after that
    :class:`~iapo.errors.TransientBackendError`. Any other status, or a 200 body that breaks the
    contract, raises :class:`~iapo.errors.PermanentBackendError` (the endpoint is misconfigured).
    The id covers the URL and ``field``; bump ``version`` when the endpoint's scoring changes.
    """

    def __init__(
        self,
        url: str,
        *,
        field: str = "score",
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        version: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"http scorer: url must start with http:// or https://, got {url!r}")
        if max_attempts < 1 or timeout <= 0 or backoff < 0:
            raise ValueError("http scorer: need max_attempts >= 1, timeout > 0, backoff >= 0")
        self.url = url
        self.field = field
        self.timeout = float(timeout)
        self.max_attempts = int(max_attempts)
        self.backoff = float(backoff)
        self.retries = 0
        self._public = public_url(url)  # no credentials in ids or messages
        self.id = f"http:{self._public}:{field}" + (f":{version}" if version else "") + "@1"

    def __repr__(self) -> str:
        return f"HttpScorer({self._public!r}, field={self.field!r})"

    def _post(self, body: bytes) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    def _parse(self, body: bytes, n: int) -> list[float]:
        bad = f"http scorer {self._public}: "
        try:
            data = json.loads(body)
        except ValueError:
            raise PermanentBackendError(bad + "response is not JSON") from None
        scores = data.get("scores") if isinstance(data, dict) else None
        if not isinstance(scores, list) or len(scores) != n:
            got = len(scores) if isinstance(scores, list) else "no"
            raise PermanentBackendError(bad + f'expected {{"scores": [{n} values]}}, got {got}')
        out = []
        for item in scores:
            value = item.get(self.field) if isinstance(item, dict) else item
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PermanentBackendError(bad + f"score {value!r} is not a number")
            out.append(float(value))
        return out

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        body = json.dumps(
            {
                "texts": list(texts),
                "query": {"id": query.id, "text": query.text, "gold": query.gold},
            }
        ).encode()
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, payload = await asyncio.to_thread(self._post, body)
            except (OSError, urllib.error.URLError) as exc:  # refused, reset, timed out
                reason = f"connection failed ({type(exc).__name__})"
            else:
                if status == 200:
                    return self._parse(payload, len(texts))
                if status < 500:
                    raise PermanentBackendError(f"http scorer {self._public}: HTTP {status}")
                reason = f"HTTP {status}"
            if attempt == self.max_attempts:
                raise TransientBackendError(
                    f"http scorer {self._public}: gave up after {attempt} attempts; last: {reason}"
                )
            self.retries += 1
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover


def http(url: str, *, field: str = "score", timeout: float = 30.0, **kw: Any) -> HttpScorer:
    """Scores from an HTTP endpoint (the contract is on :class:`HttpScorer`)."""
    return HttpScorer(url, field=field, timeout=timeout, **kw)


# --------------------------------------------------------------------------------------------
# LLM judge

_JUDGE_SYSTEM = "You are a careful, impartial grader. Follow the rubric exactly."
_JUDGE_USER = (
    "Question:\n{question}\n\nAnswer to grade:\n{answer}\n\nRubric:\n{rubric}\n\n"
    "Rate the answer on a scale from {lo} to {hi} ({hi} is best). "
    "End your reply with a line 'Rating: <number>'."
)
_NUM = re.compile(r"[-+]?\d+(?:\.\d+)?")
_RATING = re.compile(r"(?i)\b(?:rating|score)\s*[:=]?\s*\**\s*([-+]?\d+(?:\.\d+)?)")


class JudgeScorer:
    """An LLM's rating of each completion against ``rubric``, mapped from ``scale`` to [0, 1].

    One request per completion (concurrent, bounded by the client's semaphore) with the question,
    the answer and the rubric. The rating is the number after the last "Rating:"/"Score:" if it
    is in range, else the first number in range in the reply. A reply with none (or no reply)
    scores 0.0 and is counted in ``unparsed``; ``judged`` counts replies. Endpoint errors are the
    client's (:class:`~iapo.errors.PermanentBackendError` for a wrong key, model or URL).
    The id covers the judge model, the rubric (hashed), the scale, the params and the prompt
    version. A judge is a model's opinion: it favours long, confident answers.
    """

    def __init__(
        self,
        client: OpenAIChatClient,
        rubric: str,
        *,
        scale: tuple[float, float] = (1, 10),
        params: Mapping[str, Any] | None = None,
    ) -> None:
        lo, hi = float(scale[0]), float(scale[1])
        if not hi > lo:
            raise ValueError(f"judge scale must be (low, high) with low < high, got {scale!r}")
        if not rubric.strip():
            raise ValueError("judge rubric is empty")
        self.client = client
        self.rubric = rubric
        self.scale = (lo, hi)
        self.params = dict(params if params is not None else {"temperature": 0.0})
        self.judged = 0
        self.unparsed = 0
        self.id = (
            f"judge:{client.model}:rubric={_short_hash(rubric)}:scale={lo:g}-{hi:g}"
            f":params={_short_hash(self.params)}@1"
        )

    def __repr__(self) -> str:
        return f"JudgeScorer({self.id!r})"

    def parse(self, reply: str | None) -> float | None:
        """The rating in ``reply`` mapped to [0, 1], or ``None``."""
        if not reply:
            return None
        lo, hi = self.scale
        tagged = [float(m.group(1)) for m in _RATING.finditer(reply)]
        candidates = [*tagged[::-1], *(float(m.group(0)) for m in _NUM.finditer(reply))]
        for x in candidates:
            if lo <= x <= hi:
                return (x - lo) / (hi - lo)
        return None

    async def _one(self, text: str, query: Query) -> float:
        lo, hi = self.scale
        user = _JUDGE_USER.format(
            question=query.text, answer=text, rubric=self.rubric, lo=f"{lo:g}", hi=f"{hi:g}"
        )
        messages = [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]
        (reply,) = await self.client.complete(messages, 1, self.params)
        self.judged += 1
        value = self.parse(reply.text)
        if value is None:
            self.unparsed += 1
            return 0.0
        return value

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        return await gather_or_cancel(self._one(t, query) for t in texts)

    async def aclose(self) -> None:
        """Close the judge client's connections."""
        await self.client.aclose()


def judge(
    client: OpenAIChatClient,
    rubric: str,
    *,
    scale: tuple[float, float] = (1, 10),
    params: Mapping[str, Any] | None = None,
) -> JudgeScorer:
    """An LLM judge through any OpenAI-compatible endpoint (see :class:`JudgeScorer`)."""
    return JudgeScorer(client, rubric, scale=scale, params=params)


# --------------------------------------------------------------------------------------------
# profanity


class ProfanityScorer:
    """Harmlessness as ``1 − predict_prob(text)`` of ``alt-profanity-check``.

    A **weak proxy**: a bag-of-words linear model (TF-IDF + linear SVM) of offensive *language*
    trained on tweets, shipped with its weights (offline). It is not a safety model: it misses
    harmful content written politely and penalises harmless text that contains a swear word.
    The id carries the package version, so a new model never reuses old scores.
    """

    def __init__(self) -> None:
        try:
            from profanity_check import predict_prob
        except ImportError:
            raise ConfigError(
                f"the 'profanity' scorer needs alt-profanity-check: "
                f"pip install '{PROFANITY_REQUIREMENT}'"
            ) from None
        self._predict_prob: Callable[[list[str]], Any] = predict_prob
        version = importlib.metadata.version("alt-profanity-check")
        self.id = f"profanity:alt-profanity-check=={version}@1"

    def __repr__(self) -> str:
        return f"ProfanityScorer({self.id!r})"

    async def score(self, texts: Sequence[str], query: Query) -> list[float]:
        probs = await asyncio.to_thread(self._predict_prob, list(texts))
        return [1.0 - float(p) for p in probs]


def profanity() -> ProfanityScorer:
    """Harmlessness proxy from ``alt-profanity-check`` (a weak proxy; see the class)."""
    return ProfanityScorer()


# --------------------------------------------------------------------------------------------
# configuration

#: The scorer kinds :func:`build_scorers` understands.
SCORER_KINDS = ("exact_match", "agreement", "profanity", "python", "http", "judge")
_JUDGE_OWN = frozenset({"rubric", "scale", "params"})
_CLIENT_KEYS = frozenset(
    {"base_url", "model", "api_key_env", "concurrency", "rpm", "max_attempts", "timeout", "n_mode"}
)


def _default_client(cfg: Mapping[str, Any]) -> OpenAIChatClient:
    unknown = set(cfg) - _CLIENT_KEYS
    if unknown:
        raise ValueError(
            f"judge: unknown key(s) {sorted(unknown)}; valid: "
            f"{', '.join(sorted(_CLIENT_KEYS | _JUDGE_OWN))}"
        )
    if not isinstance(cfg.get("model"), str):
        raise ValueError("judge: 'model' (the judge model's name) is required")
    rest = {k: v for k, v in cfg.items() if k not in ("base_url", "model")}
    return OpenAIChatClient(cfg.get("base_url"), cfg["model"], **rest)


def _options(name: str, kind: str, entry: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    opts = {k: v for k, v in entry.items() if k != kind}
    unknown = set(opts) - allowed
    if unknown:
        raise ValueError(
            f"scorer {name!r} ({kind}): unknown option(s) {sorted(unknown)}; "
            f"valid: {', '.join(sorted(allowed)) or 'none'}"
        )
    return opts


def _build_one(
    name: str,
    entry: Any,
    extract: Extractor,
    make_client: Callable[[Mapping[str, Any]], OpenAIChatClient],
) -> Scorer:
    valid = ", ".join(SCORER_KINDS)
    if isinstance(entry, str):
        entry = {entry: None}
    if not isinstance(entry, Mapping):
        raise ValueError(f"scorer {name!r}: expected a kind name or a mapping; valid: {valid}")
    kinds = [k for k in entry if k in SCORER_KINDS]
    if len(kinds) != 1:
        raise ValueError(f"scorer {name!r}: unknown kind {dict(entry)!r}; valid: {valid}")
    kind = kinds[0]
    arg = entry[kind]
    if kind in ("exact_match", "agreement"):
        opts = _options(name, kind, entry, {"extract"})
        ex = get_extractor(opts["extract"]) if "extract" in opts else extract
        return exact_match(ex) if kind == "exact_match" else agreement(ex)
    if kind == "profanity":
        _options(name, kind, entry, set())
        return profanity()
    if kind == "python":
        opts = _options(name, kind, entry, {"batch", "version"})
        if not isinstance(arg, str):
            raise ValueError(f"scorer {name!r}: python needs 'package.module:function'")
        version = opts.get("version")
        return python(
            arg,
            batch=bool(opts.get("batch", False)),
            version=None if version is None else str(version),
        )
    if kind == "http":
        opts = _options(name, kind, entry, {"field", "timeout", "max_attempts", "version"})
        if not isinstance(arg, str):
            raise ValueError(f"scorer {name!r}: http needs a URL")
        return http(arg, **opts)
    # judge
    _options(name, kind, entry, set())
    if not isinstance(arg, Mapping) or not isinstance(arg.get("rubric"), str):
        raise ValueError(f"scorer {name!r}: judge needs a mapping with 'model' and 'rubric'")
    scale = arg.get("scale", (1, 10))
    if not isinstance(scale, list | tuple) or len(scale) != 2:
        raise ValueError(f"scorer {name!r}: judge scale must be [low, high], got {scale!r}")
    client = make_client({k: v for k, v in arg.items() if k not in _JUDGE_OWN})
    return judge(
        client, arg["rubric"], scale=(float(scale[0]), float(scale[1])), params=arg.get("params")
    )


def build_scorers(
    spec: Mapping[str, Any],
    *,
    extract: Extractor | str | Mapping[str, Any],
    make_client: Callable[[Mapping[str, Any]], OpenAIChatClient] | None = None,
) -> dict[str, Scorer]:
    """Scorers by objective name from a config mapping, e.g.::

        correct: exact_match                 # or {exact_match: null, extract: mc_letter}
        consistency: agreement
        harmless: profanity
        custom: {python: "mymod:score", batch: false, version: "2"}
        remote: {http: "http://localhost:9000/score", field: score, timeout: 30}
        helpful: {judge: {model: gpt-4o-mini, base_url: ..., rubric: "...", scale: [1, 10]}}

    ``extract`` is the run's answer extractor (used by ``exact_match`` and ``agreement`` unless
    an entry names its own). A judge's mapping, less ``rubric``/``scale``/``params``, goes to
    ``make_client`` (default: ``OpenAIChatClient(base_url, model, **rest)``). Unknown kinds or
    options raise ``ValueError`` listing the valid ones.
    """
    ex = get_extractor(extract)
    factory = make_client or _default_client
    return {str(name): _build_one(str(name), entry, ex, factory) for name, entry in spec.items()}
