"""The operator dashboard's static files, answered over the gateway's HTTP before the upgrade.

    GET /  /dashboard  /dashboard/  /dashboard/index.html   the page (text/html)
    GET /dashboard/dashboard.js                              its script (text/javascript)
    GET /dashboard/dashboard.css                             its style sheet (text/css)

The page itself talks to the WebSocket API on the same host (ws(s)://host/) like any client:
it logs on with a token, subscribes to market data and sends op.* requests, so everything it
does is authorized and journaled exactly as a command from any other client.

Invariants:
- Only the files named in FILES are ever read, from the installed package (importlib
  resources, package data `gateway/dashboard/*`): a path is looked up in ROUTES, never joined
  to a directory, so no request can reach another file (no traversal, no listing).
- A request that asks for a WebSocket upgrade (any `Upgrade` header) is never answered here,
  whatever its path: `respond` returns None and the handshake goes on ("/" is also the API).
- A path outside ROUTES that is not under /dashboard is not ours (None: the caller carries
  on); one under /dashboard that names no known file is 404.
- Responses carry an exact Content-Type, `Cache-Control: no-cache` with a strong ETag (the
  SHA-256 of the body), so a browser revalidates and gets 304 while the file is unchanged and
  never runs a stale script against a newer server; plus nosniff, a same-origin Content
  Security Policy (no inline script, no CDN) and no framing (the page holds operator buttons).
- Request headers are read with get_all: a header line sent twice is never a server error.
- Files are read once per process and kept in memory: they are a few tens of kilobytes.
"""

from __future__ import annotations

import email.utils
import hashlib
import http
import importlib.resources
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

PREFIX = "/dashboard"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
ROUTES = {
    "/": "index.html",
    PREFIX: "index.html",
    f"{PREFIX}/": "index.html",
    f"{PREFIX}/index.html": "index.html",
    f"{PREFIX}/dashboard.js": "dashboard.js",
    f"{PREFIX}/dashboard.css": "dashboard.css",
}
# Same origin only; WebSocket URLs listed as schemes since older Chromium did not match ws:
# against 'self'. Canvas charts need no more.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # Quoted, as sent.


_cache: dict[str, StaticFile] = {}


def load(name: str) -> StaticFile:
    """Return one of FILES from the installed package, read once."""
    cached = _cache.get(name)
    if cached is None:
        body = importlib.resources.files("gateway").joinpath("dashboard", name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cached = _cache[name] = StaticFile(body, FILES[name], etag)
    return cached


def respond(connection: ServerConnection, request: Request) -> Response | None:
    """Answer a plain GET for the dashboard; None for an upgrade or a path that is not ours."""
    if "Upgrade" in request.headers:
        return None
    path = request.path.partition("?")[0].partition("#")[0]
    name = ROUTES.get(path)
    if name is None:
        if path.startswith(PREFIX + "/"):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no such file\n")
        return None
    static = load(name)
    headers = _headers(static)
    # Several If-None-Match lines are one comma-separated list (RFC 9110 §5.3); headers.get
    # would raise on them (websockets' MultipleValuesError: a 500 for any client).
    if _matches(", ".join(request.headers.get_all("If-None-Match")) or None, static.etag):
        return Response(http.HTTPStatus.NOT_MODIFIED.value, "Not Modified", headers, b"")
    headers["Content-Type"] = static.content_type
    headers["Content-Length"] = str(len(static.body))
    return Response(http.HTTPStatus.OK.value, "OK", headers, static.body)


def _headers(static: StaticFile) -> Headers:
    return Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),  # As websockets' own plain answers: one per connection.
            ("Cache-Control", "no-cache"),
            ("ETag", static.etag),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        ]
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    # RFC 9110 §13.1.2: a list of entity tags or "*"; weak comparison.
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
