"""Scorers from a run config's ``scorers`` mapping (:func:`build_scorers`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from iapo.answers import Extractor, get_extractor
from iapo.chat_client import OpenAIChatClient
from iapo.scorers._answers import agreement, exact_match
from iapo.scorers._base import Scorer
from iapo.scorers._callable import python
from iapo.scorers._http import http
from iapo.scorers._judge import judge
from iapo.scorers._profanity import profanity

__all__ = ["SCORER_KINDS", "build_scorers"]


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
