"""``/live``, ``/ready`` and ``/metrics`` over plain HTTP, on the standard library's server.

* ``/live``: 200 as soon as the provider serves its socket; it never depends on OpenBao, so an
  OpenBao outage cannot make kubelet restart the provider (which would not help).
* ``/ready``: 200 when Status would answer ``ok``, else 503; the JSON body says why
  (``healthz``, ``reasons``, snapshot age, active version, last ``error_class``). It turns 503
  as soon as the provider starts draining on SIGTERM.
* ``/metrics``: the Prometheus text exposition of the injected registry.

Only GET and HEAD are served; any other method is 405 with ``Allow: GET, HEAD``, an unknown
path 404. ``server.healthAddress`` serves ``/live`` and ``/ready``, ``server.metricsAddress``
serves ``/metrics``; when both are the same address, one listener serves all three. Each
listener is a ``ThreadingHTTPServer`` on its own daemon thread, bound before :meth:`start`
returns (a taken port is a start-up error), with a socket timeout so a slow client cannot pin
a thread. Bodies hold reason words, numbers and hashes only: nothing secret.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import SocketError
from ..logs import short_hash
from .metrics import StatusView

log = logging.getLogger("bao_kms.ops")

#: a path -> (status, content type, body) producer
Route = Callable[[], tuple[int, str, bytes]]
_JSON = "application/json"


def split_address(address: str) -> tuple[str, int]:
    """``127.0.0.1:8787`` / ``[::1]:8787`` / ``localhost:8787`` -> (host, port)."""
    parts = urllib.parse.urlsplit(f"//{address}")
    host = parts.hostname or ""
    return ("127.0.0.1" if host == "localhost" else host), parts.port or 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    routes: Mapping[str, Route] = {}

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr, which carries JSON lines only. A client
        # that hung up mid-request (a probe or a scrape timing out) is not worth a line.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        log.error(
            "ops endpoint failed with a bug",
            extra={"event": "http_bug", "error_type": type(error).__name__},
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for Prometheus; every answer has a length
    server_version = "bao-kms-provider"
    sys_version = ""
    timeout = 10.0  # seconds a client may take to send its request
    server: _Server

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def __getattr__(self, name: str) -> Any:
        # http.server answers 501 for a method it has no do_X for; every method other than
        # GET and HEAD is 405 here, whatever its name
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.close_connection = True  # any request body stays unread: do not reuse the stream
        self._send(405, "text/plain", b"method not allowed\n", True, {"Allow": "GET, HEAD"})

    def _answer(self, send_body: bool) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._send(404, "text/plain", b"not found\n", send_body)
            return
        try:
            status, content_type, body = route()
        except Exception as error:  # noqa: BLE001 - a bug must not kill the listener
            log.error(
                "ops endpoint failed with a bug",
                extra={"event": "http_bug", "error_type": type(error).__name__},
            )
            status, content_type, body = 500, "text/plain", b"internal error\n"
        self._send(status, content_type, body, send_body)

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        send_body: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per probe every few seconds would drown the provider's own log


class OpsEndpoints:
    """The HTTP listeners; :meth:`start` binds (SocketError if it cannot), :meth:`stop` ends."""

    def __init__(
        self,
        status: StatusView,
        registry: CollectorRegistry,
        *,
        health_address: str,
        metrics_address: str,
        key_registry: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._status = status
        #: what /ready says about the key version registry (persistence on or off, generation)
        self._key_registry = key_registry
        self._registry = registry
        self._draining = False
        health: dict[str, Route] = {"/live": self._live, "/ready": self._ready}
        metrics: dict[str, Route] = {"/metrics": self._metrics}
        if split_address(health_address) == split_address(metrics_address):
            self._plan = [(health_address, health | metrics)]
        else:
            self._plan = [(health_address, health), (metrics_address, metrics)]
        self._servers: list[tuple[_Server, threading.Thread]] = []
        #: route -> the address it is served on, with the real port once started
        self.addresses: dict[str, str] = {}

    def start(self) -> None:
        try:
            for address, routes in self._plan:
                server = _bind(address)
                server.routes = routes
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.2},
                    name="bao-kms-http",
                    daemon=True,
                )
                self._servers.append((server, thread))
                bound = _format(server.server_address)
                for path in routes:
                    self.addresses[path] = bound
        except BaseException:
            self.stop()
            raise
        for _, thread in self._servers:
            thread.start()

    def draining(self) -> None:
        """From now on /ready answers 503: the provider is shutting down."""
        self._draining = True

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server, thread in servers:
            if thread.is_alive():
                server.shutdown()
            server.server_close()
            if thread.ident is not None:  # a start that failed half-way never started it
                thread.join(5)

    # --- routes -------------------------------------------------------------------------------

    def _live(self) -> tuple[int, str, bytes]:
        return 200, _JSON, b'{"live":true}\n'

    def _ready(self) -> tuple[int, str, bytes]:
        snapshot = self._status.snapshot
        health = self._status.health()
        ready = health.ok and not self._draining
        body: dict[str, Any] = {
            "ready": ready,
            "healthz": health.healthz,
            "reasons": [str(reason) for reason in health.reasons],
            "snapshot_age_seconds": (
                round(health.snapshot_age, 3) if health.snapshot_age is not None else None
            ),
            "active_version": snapshot.active.version if snapshot.active is not None else None,
            "key_id_hash": short_hash(health.key_id) if health.ok else None,
            "last_error_class": snapshot.error_class or None,
            "draining": self._draining,
        }
        if self._key_registry is not None:
            body["key_registry"] = dict(self._key_registry())
        return (200 if ready else 503), _JSON, orjson.dumps(body) + b"\n"

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)


def _bind(address: str) -> _Server:
    host, port = split_address(address)
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    server_class = type("_BoundServer", (_Server,), {"address_family": family})
    try:
        return server_class((host, port), _Handler)
    except OSError as error:
        raise SocketError(
            f"cannot listen on {address} for /live, /ready, /metrics: {error.strerror}"
        ) from None


def _format(server_address: tuple[Any, ...]) -> str:
    host, port = server_address[0], server_address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
