"""Unit tests for ferry.relay.site: routes, the web root's files, Origin and Host checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.errors import HttpError
from ferry.protocol.http import parse_request
from ferry.relay import site
from ferry.webbundle import WEBAPP


@pytest.fixture
def root(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "assets").mkdir(parents=True)
    (app / "index.html").write_text("<!doctype html>")
    (app / "app.js").write_text("1")
    (app / "assets" / "style.css").write_text("a{}")
    (app / "data.bin").write_bytes(b"\0")
    (app / ".env.js").write_text("secret")
    (tmp_path / "outside.js").write_text("outside")
    (app / "link.js").symlink_to(tmp_path / "outside.js")
    (app / "inside.js").symlink_to(app / "app.js")
    return app


def request(target: str, **headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: relay.example:9021"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade"}


def test_root_path_is_the_index(root: Path) -> None:
    found = site.static_file(root, "/")
    assert found is not None
    assert found.path == (root / "index.html").resolve()
    assert found.content_type == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "assets/style.css", "text/css; charset=utf-8"),
        ("/assets%2fstyle.css", "assets/style.css", "text/css; charset=utf-8"),
        ("/inside.js", "app.js", "text/javascript; charset=utf-8"),
    ],
)
def test_files_inside_the_root_are_found_with_their_type(
    root: Path, path: str, name: str, content_type: str
) -> None:
    found = site.static_file(root, path)
    assert found == site.StaticFile((root / name).resolve(), content_type)


@pytest.mark.parametrize(
    "path",
    [
        "/../outside.js",
        "/assets/../../outside.js",
        "/%2e%2e/outside.js",
        "/assets%2f..%2f..%2foutside.js",
        "/link.js",
        "/.env.js",
        "/data.bin",
        "/missing.js",
        "/assets",
        "/assets/",
        "//app.js",
        "/app.js%00.html",
        "/app.js\\..\\x.js",
    ],
)
def test_paths_that_leave_the_root_or_are_not_app_files_are_none(root: Path, path: str) -> None:
    assert site.static_file(root, path) is None


def test_a_missing_root_finds_nothing(tmp_path: Path) -> None:
    assert site.static_file(tmp_path / "nowhere", "/") is None


def test_route_upgrade_on_ws_path_only() -> None:
    assert site.route(parse_request(request("/ws", **UPGRADE)), None) == site.Upgrade()
    with pytest.raises(HttpError) as plain:
        site.route(parse_request(request("/ws")), None)
    assert plain.value.status == 426
    with pytest.raises(HttpError) as elsewhere:
        site.route(parse_request(request("/other", **UPGRADE)), None)
    assert elsewhere.value.status == 404


def test_route_without_web_app_says_so(tmp_path: Path) -> None:
    with pytest.raises(HttpError) as missing:
        site.route(parse_request(request("/")), tmp_path / "nowhere")
    assert missing.value.status == 404
    assert str(missing.value) == "this relay has no web app installed"


def test_route_serves_a_file(root: Path) -> None:
    found = site.route(parse_request(request("/app.js?v=1")), root)
    assert isinstance(found, site.StaticFile) and found.path.name == "app.js"


def test_the_packaged_service_worker_is_served_as_a_script_at_the_root() -> None:
    # A browser registers a worker only from a JavaScript Content-Type; at the
    # root its scope is the whole app.
    found = site.route(parse_request(request(f"/{site.SERVICE_WORKER}")), WEBAPP)
    assert isinstance(found, site.StaticFile)
    assert found.path == WEBAPP / "sw.js"
    assert found.content_type == "text/javascript; charset=utf-8"
    assert site.security_headers("relay.example:9021")["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("", True),
        ("http://relay.example:9021", True),
        ("https://RELAY.example:9021", True),
        ("https://relay.example", False),
        ("https://evil.example", False),
        ("null", False),
        ("file://relay.example:9021", False),
        ("http://relay.example:9021.evil.example", False),
    ],
)
def test_origin_must_name_this_host(origin: str, allowed: bool) -> None:
    assert site.origin_allowed(origin, "relay.example:9021") is allowed


def test_upgrade_from_another_origin_is_403() -> None:
    raw = request("/ws", Origin="https://evil.example", **UPGRADE)
    with pytest.raises(HttpError) as refused:
        site.route(parse_request(raw), None)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("relay.example", True),
        ("relay.example:443", True),
        ("127.0.0.1:9021", True),
        ("[::1]:9021", True),
        ("", False),
        ("relay.example; script-src *", False),
        ("a b", False),
        ("relay.example:", False),
        ("-relay", False),
    ],
)
def test_host_header_check(host: str, valid: bool) -> None:
    assert site.valid_host(host) is valid


def test_security_headers_allow_only_this_origin() -> None:
    headers = site.security_headers("relay.example:9021")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self' ws://relay.example:9021 wss://relay.example:9021" in policy
    assert "frame-ancestors 'none'" in policy
    assert "worker-src 'self';" in policy and "frame-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert not any(name.lower() == "set-cookie" for name in headers)


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60))
def test_any_path_gives_a_file_inside_or_none(path: str) -> None:
    root = Path(__file__).resolve().parent
    try:
        found = site.static_file(root, "/" + path)
    except UnicodeDecodeError:
        return  # route() answers 404 for an undecodable path
    assert found is None or found.path.is_relative_to(root)
