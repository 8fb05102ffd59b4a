"""``netready config serve``: the fleet's configuration server (aiohttp, the ``server`` extra).

The socket edge of ``netready.fleet.Publisher``, which holds every site's signed slice of the
inventory and decides each answer (docs/fleet.md). Wire contract (HTTP/1.1):

``GET /sites/ODS`` (or ``HEAD``)
    200 with the slice (``Content-Type: application/yaml``), its ``ETag`` (a strong tag of
    its bytes) and ``X-Netready-Signature`` (base64 ed25519 signature of exactly the bytes
    sent); 304 when ``If-None-Match`` names the current ETag; 404 for a site the inventory
    does not have; 405 for another method.

Refusals: a source outside ``--allow`` gets no answer at all (the connection is closed when
it is accepted, before a byte is read); with ``--token``, a request without ``Authorization:
Bearer <token>`` (compared in constant time) gets 401. The answers are a few KiB and only to
a request on an established TCP connection: the server never sends more than it was asked for.

HTTPS with ``--tls-cert``/``--tls-key``; plain HTTP only on a loopback address unless
``--allow-plain-http`` (the signature keeps a slice from being changed on the way, not from
being read). Idle keep-alive connections close after ``IDLE_S``. The inventory file is
checked for changes at most every 2 s (``Publisher.refresh``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from netready.errors import ConfigError, ServerError
from netready.fleet import Publisher, signing_key
from netready.optional import require

require("aiohttp", "netready config serve")
from aiohttp import web  # noqa: E402
from netready.servers.guard import AllowList, is_loopback  # noqa: E402
from netready.servers.speed import _hostport, _url_host, tls_context  # noqa: E402

log = logging.getLogger("netready.config")

#: Seconds an idle keep-alive connection is kept.
IDLE_S = 15.0


class _Server(web.Server):
    """aiohttp's low-level server; a source outside the allow-list is closed when accepted."""

    def __init__(self, cfg: ConfigServer, **kwargs: Any):
        super().__init__(cfg.handle, **kwargs)
        self._cfg = cfg

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        peer = transport.get_extra_info("peername")
        if not peer or not self._cfg.allow.allows(str(peer[0])):
            self._cfg.refused += 1
            transport.pause_reading()  # not a byte of it is read
            asyncio.get_running_loop().call_soon(handler.force_close)


class ConfigServer:
    """``await start(host, port, ssl)`` returns the bound port; ``await close()``."""

    def __init__(self, publisher: Publisher, allow: AllowList, token: str | None = None):
        self.publisher = publisher
        self.allow = allow
        self._token = token.encode() if token else None
        self._runner: web.ServerRunner | None = None
        self.refused = 0  # connections from outside the allow-list
        self.answers: dict[int, int] = {}  # status -> count

    def _authorized(self, request: web.BaseRequest) -> bool:
        if self._token is None:
            return True
        got = request.headers.get("Authorization", "")
        scheme, _, cred = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            cred.strip().encode(), self._token
        )

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if not self._authorized(request):
            status, resp = 401, web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            self.publisher.refresh()
            a = self.publisher.answer(
                request.method, request.path, request.headers.get("If-None-Match")
            )
            status, resp = a.status, web.Response(status=a.status, headers=a.headers, body=a.body)
        self.answers[status] = self.answers.get(status, 0) + 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        log.info(
            "%s %s %s -> %d",
            peer[0] if peer else "?",
            request.method,
            request.path[:100].encode("unicode_escape").decode(),
            status,
        )
        return resp

    async def start(self, host: str, port: int, ssl_context: Any = None) -> int:
        server = _Server(self, keepalive_timeout=IDLE_S, access_log=None)
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or None, port, ssl_context=ssl_context)
        await site.start()
        srv: Any = site._server  # an asyncio.Server
        return int(srv.sockets[0].getsockname()[1]) if srv and srv.sockets else port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class Endpoint:
    """A config server ready to run (``run(stop)`` until ``stop`` is set)."""

    server: ConfigServer
    host: str
    port: int
    ssl_context: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            bound = await self.server.start(self.host, self.port, self.ssl_context)
        except OSError as e:
            await self.server.close()
            raise ServerError(
                f"cannot listen on {_url_host(self.host)}:{self.port}: {e.strerror or e}"
            ) from None
        try:
            scheme = "https" if self.ssl_context is not None else "http"
            log.info(
                "publishing %d slices of %s on %s://%s:%d/sites/ODS",
                self.server.publisher.published.sites,
                self.server.publisher.path,
                scheme,
                _url_host(self.host),
                bound,
            )
            await stop.wait()
        finally:
            await self.server.close()


def endpoint(
    inventory_path: str,
    signing_key_ref: str,
    listen: str,
    *,
    allow: tuple[str, ...] | list[str],
    token: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    allow_plain_http: bool = False,
) -> Endpoint:
    """Everything ``config serve`` checks before it listens: plain HTTP only on loopback
    (unless ``allow_plain_http``), the signing key, the inventory (its problems, exit 2),
    the token reference, the TLS pair."""
    from netready.inventory import HeaderSecretRef

    host, port = _hostport(listen)
    if not (tls_cert or tls_key or allow_plain_http or is_loopback(host)):
        raise ConfigError(
            f"--listen {listen}: plain HTTP on a non-loopback address shows every slice "
            "(router addresses, circuit ids) to anyone on the path; give --tls-cert and "
            "--tls-key, or --allow-plain-http on a network you trust"
        )
    secret = None
    if token is not None:
        try:
            secret = HeaderSecretRef.check(token).resolve()
        except ValueError as e:
            raise ConfigError(f"--token: {e}") from None
    publisher = Publisher(inventory_path, signing_key(signing_key_ref))
    ssl_context = tls_context(tls_cert, tls_key)
    return Endpoint(
        ConfigServer(publisher, AllowList(list(allow)), secret), host, port, ssl_context
    )


__all__ = ["IDLE_S", "ConfigServer", "Endpoint", "endpoint"]
