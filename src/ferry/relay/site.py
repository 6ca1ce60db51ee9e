"""What the relay answers a browser's HTTP request: routes, files, headers.

Theory of operation. A browser's connection carries one request head
(protocol/http.py parses it) and gets one answer, decided here without I/O:

    GET|HEAD /ws  + Upgrade: websocket   -> Upgrade (the bridge, bridge.py)
    GET /ws       without the upgrade    -> 426
    GET|HEAD /    and /<file>            -> StaticFile under the web root, or 404

Rules this module owns:

- Files come from one directory (the web root) and nowhere else: the path
  is percent-decoded, every segment must be a plain name (no "..", no
  hidden names, no backslash or NUL), the result must resolve (symbolic
  links followed) inside the root, be a regular file, and have an
  extension with a known Content-Type. Anything else is 404, the same
  answer as a missing file, so the answer does not tell what exists.
- Every answer of the web app carries the same strict headers: a
  Content-Security-Policy that allows only the relay's own origin (no
  inline script, no third-party origin, the WebSocket back to this host,
  no framing), nosniff, no referrer, no cookies ever.
- The web app's service worker (SERVICE_WORKER, /sw.js: it streams the
  browser's downloads) is served like any script: a JavaScript
  Content-Type, which browsers require of a worker; at the root, so its
  scope is the whole app without a Service-Worker-Allowed header; no-cache,
  so a browser checks for a new one whenever the page registers it. The
  policy's worker-src 'self' admits it and no other worker, and frame-src
  'self' the hidden frame in which the page starts a download.
- A WebSocket upgrade is accepted from a page of this very host (the
  Origin's host:port equals the Host header) or from a client that sends
  no Origin (not a browser: it could forge one anyway). Any other origin
  is 403, so another site's page cannot open a leg from a visitor's
  browser.
- The Host header is checked (a name or an address, an optional port)
  before it is written into a header.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ferry.errors import HttpError
from ferry.protocol.http import Request
from ferry.protocol.websocket import is_upgrade

WS_PATH: Final = "/ws"
"""The path of the WebSocket endpoint."""
INDEX: Final = "index.html"
SERVICE_WORKER: Final = "sw.js"
"""The web app's service worker, at the root of the web root (module docstring)."""

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
}
"""The only files served, by extension."""

_HOST: Final = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$"
)


@dataclass(frozen=True)
class StaticFile:
    path: Path
    content_type: str


@dataclass(frozen=True)
class Upgrade:
    """A WebSocket upgrade that passed the route and Origin checks (the
    handshake's own checks are websocket.handshake_response's)."""


Route = StaticFile | Upgrade


def valid_host(host: str) -> bool:
    """Whether a Host header is a plain name or address with an optional port."""
    return bool(_HOST.match(host))


def origin_allowed(origin: str, host: str) -> bool:
    """Whether a page of ``origin`` may open a WebSocket on ``host`` (module docstring)."""
    if not origin:
        return True
    parts = urllib.parse.urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host.lower()


def security_headers(host: str) -> dict[str, str]:
    """The headers on every answer of the web app; ``host`` already passed valid_host."""
    policy = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "worker-src 'self'",
            "frame-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


def static_file(root: Path, path: str) -> StaticFile | None:
    """The file a URL path names under root, or None (module docstring: the rules)."""
    name = urllib.parse.unquote(path, errors="strict") if "%" in path else path
    segments = name.split("/")[1:]
    if segments == [""]:
        segments = [INDEX]
    for segment in segments:
        if not segment or segment.startswith(".") or "\\" in segment or "\0" in segment:
            return None
    content_type = CONTENT_TYPES.get(Path(segments[-1]).suffix.lower())
    if content_type is None:
        return None
    try:
        base = root.resolve(strict=True)
        target = base.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return StaticFile(target, content_type)


def route(request: Request, root: Path | None) -> Route:
    """What to answer; HttpError for every refusal (its status and text)."""
    host = request.header("host")
    if not valid_host(host):
        raise HttpError(400, "missing or malformed Host header")
    if request.path == WS_PATH:
        if not is_upgrade(request):
            raise HttpError(426, "this path speaks WebSocket only")
        if not origin_allowed(request.header("origin"), host):
            raise HttpError(403, "WebSocket from another origin")
        return Upgrade()
    if is_upgrade(request):
        raise HttpError(404, f"WebSocket is served on {WS_PATH} only")
    found = None
    if root is not None:
        try:
            found = static_file(root, request.path)
        except UnicodeDecodeError:
            found = None
    if found is None:
        if request.path == "/" and (root is None or not root.is_dir()):
            raise HttpError(404, "this relay has no web app installed")
        raise HttpError(404, "no such file")
    return found
