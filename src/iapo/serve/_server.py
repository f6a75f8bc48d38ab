"""``PolicyServer``: the app on a socket of its own, served by uvicorn (foreground or thread)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import threading
import warnings
from types import TracebackType

import uvicorn

from iapo.deploy import Policy
from iapo.errors import ConfigError
from iapo.serve._app import make_app
from iapo.serve._limits import DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, Limits

__all__ = ["BACKLOG", "PolicyServer", "ServeWarning"]

#: Connections the kernel queues before the server accepts them.
BACKLOG = 2048


class ServeWarning(UserWarning):
    """A server set up in a way that is allowed but risky (e.g. open to the network, no key)."""


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a :class:`ConfigError` naming the flag otherwise."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"must be 0..65535 (got {port}): choose another port", field="--port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot resolve {host!r} ({exc.strerror}): give a local address such as "
            "127.0.0.1 or 0.0.0.0",
            field="--host",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use: choose another --port (0: any free one)",
                field="--port",
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}): give a local address "
            "(127.0.0.1, 0.0.0.0) and a free port",
            field="--host",
        ) from None
    return sock


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class PolicyServer:
    """Serve ``policy`` over HTTP on ``host:port`` (port 0: any free port), OpenAI-compatibly.

    The socket is bound here: a port in use or out of range, or a host that does not resolve to
    a local address, is a :class:`~iapo.errors.ConfigError` naming ``--port`` or ``--host``
    (nothing is served). :meth:`serve_forever` serves in the calling thread (Ctrl-C stops it
    gracefully); :meth:`start` (or ``with PolicyServer(...) as server:``) in a background thread
    until :meth:`stop`. Either way one event loop answers every request, with the policy's one
    backend, closed at shutdown.

    ``api_key``: requests to ``/v1/*`` must send ``Authorization: Bearer <api_key>`` (401
    otherwise; ``/health`` stays open); binding a non-loopback address without one warns
    (:class:`ServeWarning`). ``max_body``: the largest request body, in bytes (413 beyond).
    ``timeout``: seconds per request, from its body to its answer (504 beyond; 408 if the body
    itself is that slow).
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        api_key: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if max_body < 1:
            raise ConfigError(f"must be at least 1 byte (got {max_body})", field="--max-body")
        if not timeout > 0:
            raise ConfigError(f"must be positive seconds (got {timeout})", field="--timeout")
        self.policy = policy
        self.limits = Limits(api_key or None, int(max_body), float(timeout))
        self.socket = _bind(host, port)
        self.address: tuple[str, int] = self.socket.getsockname()[:2]
        if api_key is None and not _loopback(self.address[0]):
            warnings.warn(
                f"serving on {self.address[0]} without an API key: anyone who reaches this "
                "address spends your upstream endpoint's budget (give --api-key-env)",
                ServeWarning,
                stacklevel=2,
            )
        config = uvicorn.Config(
            make_app(policy, self.limits),
            lifespan="on",
            log_config=None,  # the application's logging, untouched
            log_level="warning",
            access_log=False,
            backlog=BACKLOG,
            timeout_graceful_shutdown=5,
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://HOST:PORT/v1``."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (SIGINT/SIGTERM: a graceful shutdown)."""
        self.server.run(sockets=[self.socket])

    def start(self) -> PolicyServer:
        """Serve in a background thread; returns once the server accepts requests."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self._serve(ready))
            except BaseException as exc:  # reported to start(); SystemExit from a bad startup
                failed.append(exc)
            finally:
                ready.set()

        self._thread = threading.Thread(target=main, name="iapo-serve", daemon=True)
        self._thread.start()
        ready.wait()
        if failed or not self.server.started:
            self._thread.join(timeout=5)
            raise RuntimeError(f"the server did not start: {failed[0] if failed else 'unknown'}")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        async def tell() -> None:
            while not self.server.started and not self.server.should_exit:
                await asyncio.sleep(0.005)
            ready.set()

        teller = asyncio.ensure_future(tell())
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            teller.cancel()

    def stop(self) -> None:
        """Stop serving (requests in flight get up to 5 s) and close the policy's backend."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.socket.close()

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
