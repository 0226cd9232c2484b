"""The exporter's HTTP side: a landing page at ``/``, metrics at ``/metrics``, on a daemon thread.

Plain ``wsgiref`` with one thread per request (a slow scrape never blocks the next); the metrics
WSGI app is handed in by :mod:`services.exporter`, so this module does not know prometheus_client.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def landing_page(services: Mapping[str, bool]) -> bytes:
    """A small HTML page: what this is, a link to ``/metrics``, each service up or down."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{'up' if up else 'down'}</td></tr>" for name, up in services.items()
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>speck-edge exporter</title></head><body>"
        "<h1>speck-edge exporter</h1>"
        "<p>Prometheus metrics of the speck-edge pipeline (a software twin of SynSense Speck), "
        "gathered from each service's telemetry over ZeroMQ.</p>"
        "<p><a href='/metrics'>/metrics</a></p>"
        f"<table><tr><th>service</th><th>state</th></tr>{rows}</table></body></html>"
    ).encode()


def router(metrics: WsgiApp, services: Callable[[], Mapping[str, bool]]) -> WsgiApp:
    """``/`` → the landing page, ``/metrics`` → ``metrics``, anything else → 404."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path in ("", "/"):
            body, status = landing_page(services()), "200 OK"
            ctype = "text/html; charset=utf-8"
        else:
            body, status, ctype = b"not found; see /metrics\n", "404 Not Found", "text/plain; charset=utf-8"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    return app


def start(host: str, port: int, app: WsgiApp) -> tuple[WSGIServer, threading.Thread, int]:
    """Serve ``app`` on ``host:port`` (0 = any free port) from a daemon thread; returns the bound port."""
    server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True)
    thread.start()
    return server, thread, int(server.server_address[1])


def stop(server: WSGIServer) -> None:
    """Stop serving and close the listening socket."""
    server.shutdown()
    server.server_close()
