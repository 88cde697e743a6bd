"""The dashboard's static files over the gateway's HTTP, before any WebSocket upgrade.

Rules:
- GET / , /dashboard, /dashboard/ and /dashboard/index.html answer the page (text/html);
  /dashboard/dashboard.js and /dashboard/dashboard.css their file with its exact type.
- Every answer carries Cache-Control: no-cache and a strong ETag; If-None-Match with that
  ETag answers 304 with no body. If-None-Match sent on several header lines is one list
  (RFC 9110 §5.3): the ETag among any of them answers 304, none of them 200; never a 500.
- Only known files: any other path under /dashboard is 404, whatever dots, slashes or
  encodings it holds (nothing is ever joined to a directory); paths outside it are not ours.
- An upgrade to "/" is still the WebSocket API (a client logs on and lists instruments).
- What is served is the file shipped in the package, byte for byte.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.resources
import logging
import urllib.parse

import pytest

from gateway.server import RunningServer
from tests.gateway.conftest import SYMBOL, Venue, raw_http

pytestmark = pytest.mark.asyncio

PAGE_PATHS = ["/", "/dashboard", "/dashboard/", "/dashboard/index.html", "/?x=1"]
TRAVERSALS = [
    "/dashboard/../gateway/server.py",
    "/dashboard/%2e%2e/server.py",
    "/dashboard/..%2fserver.py",
    "/dashboard//etc/passwd",
    "/dashboard/dashboard.js/",
    "/dashboard/DASHBOARD.JS",
    "/dashboard/__init__.py",
    "/dashboard/dashboard_http.py",
]


def _fetch(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def _shipped(name: str) -> bytes:
    return importlib.resources.files("gateway").joinpath("dashboard", name).read_bytes()


async def test_page_paths_answer_the_shipped_index(server: RunningServer) -> None:
    for path in PAGE_PATHS:
        status, headers, body = await asyncio.to_thread(_fetch, server.port, path)
        assert status == 200, path
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert body == _shipped("index.html")
        assert b'src="/dashboard/dashboard.js"' in body


async def test_script_and_style_have_their_types(server: RunningServer) -> None:
    expected = {
        "/dashboard/dashboard.js": ("text/javascript; charset=utf-8", "dashboard.js"),
        "/dashboard/dashboard.css": ("text/css; charset=utf-8", "dashboard.css"),
    }
    for path, (content_type, name) in expected.items():
        status, headers, body = await asyncio.to_thread(_fetch, server.port, path)
        assert (status, headers["content-type"]) == (200, content_type)
        assert body == _shipped(name)
        assert int(headers["content-length"]) == len(body)


async def test_etag_revalidates_to_304(server: RunningServer) -> None:
    status, headers, _ = await asyncio.to_thread(_fetch, server.port, "/dashboard/dashboard.js")
    etag = headers["etag"]
    assert status == 200 and etag.startswith('"') and etag.endswith('"')
    status, headers, body = await asyncio.to_thread(
        _fetch, server.port, "/dashboard/dashboard.js", {"If-None-Match": etag}
    )
    assert (status, body, headers["etag"]) == (304, b"", etag)
    status, _, body = await asyncio.to_thread(
        _fetch, server.port, "/dashboard/dashboard.js", {"If-None-Match": '"other"'}
    )
    assert status == 200 and body == _shipped("dashboard.js")


async def test_if_none_match_on_several_lines_is_matched_against_every_value(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, headers, _ = await asyncio.to_thread(_fetch, server.port, "/dashboard/dashboard.js")
    etag = headers["etag"]

    def request(*tags: str) -> bytes:
        lines = "".join(f"If-None-Match: {tag}\r\n" for tag in tags)
        return f"GET /dashboard/dashboard.js HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()

    for tags, expected in (
        (('"a"', etag), 304),
        ((etag, '"b"'), 304),
        (('"a", "b"', f"W/{etag}"), 304),
        (('"a"', '"b"'), 200),
    ):
        status, answer = await asyncio.to_thread(raw_http, server.port, request(*tags))
        assert status == expected, (tags, answer[:200])
        if expected == 200:
            assert answer.endswith(_shipped("dashboard.js"))
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_only_known_files_no_traversal(server: RunningServer) -> None:
    for path in TRAVERSALS:
        status, headers, body = await asyncio.to_thread(_fetch, server.port, path)
        assert status == 404, path
        assert b"import" not in body and b"root:" not in body
        assert headers["content-type"].startswith("text/plain")
    # Not under /dashboard: not the dashboard's, the server answers as before (no upgrade).
    status, _, body = await asyncio.to_thread(_fetch, server.port, "/nothing-here")
    assert status != 200 and b"<html" not in body
    status, _, body = await asyncio.to_thread(_fetch, server.port, "/livez")
    assert (status, body) == (200, b"ok\n")


async def test_websocket_upgrade_to_root_is_still_the_api(market: Venue) -> None:
    assert urllib.parse.urlsplit(market.url).path == "/"
    for bearer in (True, False):
        client = await market.client("alice", bearer=bearer)
        try:
            listing = await client.request("instruments.list")
        finally:
            await client.close()
        assert [view["symbol"] for view in listing["instruments"]] == [SYMBOL]
