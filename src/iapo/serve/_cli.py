"""The ``iapo serve`` command (Starlette and uvicorn are imported only when it runs)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from typing import Any

from iapo.errors import ConfigError
from iapo.serve._limits import DEFAULT_MAX_BODY, DEFAULT_TIMEOUT

__all__ = ["register_cli"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from iapo.deploy import Policy

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "needs Starlette and uvicorn: pip install 'iapo[serve]'", field="serve"
        ) from None
    from iapo.serve._server import PolicyServer, ServeWarning

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        raise ConfigError(
            f"${args.api_key_env} is empty or not set: export the key clients must send there",
            field="--api-key-env",
        )
    policy = Policy.load(args.result, concurrency=args.concurrency)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", ServeWarning)
        server = PolicyServer(
            policy, args.host, args.port, api_key=key, max_body=args.max_body, timeout=args.timeout
        )
    if policy.backend is None:
        server.socket.close()
        raise ConfigError(
            "this policy was learned by replaying a recorded pool, which cannot answer new "
            "questions: serve a policy learned live (or, in Python, give PolicyServer a "
            "Policy.load(result, backend=...))",
            field="backend",
        )
    for w in said:
        print(f"iapo: warning: {w.message}", file=sys.stderr)
    print(
        f"serving {len(policy.arms)} contexts at {server.base_url} (the request's 'model' "
        f"names the context; at most {policy.backend.concurrency} requests upstream at once"
        f"{'; bearer key required' if key else ''}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped on
        server.serve_forever()
    return 0


def register_cli(sub: Any) -> None:
    """Add ``iapo serve`` to the ``iapo`` argument parser's subparsers."""
    p = sub.add_parser("serve", help="an OpenAI-compatible proxy: model = context name")
    p.add_argument("result", help="a run directory or its result.json")
    p.add_argument(
        "--host", default="127.0.0.1", help="local address to listen on (0.0.0.0: every one)"
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free one)")
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require 'Authorization: Bearer <key>', the key read from this environment variable",
    )
    p.add_argument(
        "--concurrency",
        type=_positive,
        help="most requests in flight upstream, across all clients (default: the run config's "
        "backend.concurrency)",
    )
    p.add_argument(
        "--max-body",
        type=_positive,
        default=DEFAULT_MAX_BODY,
        help="largest request body, in bytes",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per request, from its body to its answer (upstream retries included)",
    )
    p.set_defaults(func=_cmd_serve)
