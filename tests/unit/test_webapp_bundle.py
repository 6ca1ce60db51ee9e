"""The committed web app (src/ferry/webapp) is exactly what web/build.mjs makes of web/src.

The relay serves src/ferry/webapp with a bare Python, so the bundle is
committed; this test rebuilds it from web/src with the pinned esbuild
(web/package-lock.json) into a temporary directory and fails on any
difference, so a change to web/src without `make web` cannot be merged.
It also checks what the page must never do (inline script, a third-party
origin) and that the digest helper agrees with `sha256sum * | sha256sum`.

Locally these skip without node; with CI=true they must run (ferry_testing/node.py).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from ferry.webbundle import WEBAPP, bundle_digest, file_digests
from ferry_testing.node import WEB, require_node

SECURITY = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"

pytestmark = pytest.mark.timeout(180)


def test_committed_bundle_is_the_build_of_web_src(tmp_path: Path) -> None:
    node = require_node()
    out = tmp_path / "webapp"
    result = subprocess.run(
        [node, "build.mjs", str(out)], cwd=WEB, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    built = {p.name: p.read_bytes() for p in out.iterdir()}
    committed = {p.name: p.read_bytes() for p in WEBAPP.iterdir() if p.is_file()}
    assert sorted(built) == sorted(committed) == ["app.css", "app.js", "index.html", "sw.js"]
    stale = [name for name in built if built[name] != committed[name]]
    assert not stale, f"{stale} differ from the build of web/src: run `make web` and commit"


def test_page_has_no_inline_script_and_no_other_origin() -> None:
    html = (WEBAPP / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' src="app.js" defer', "")]
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "style=" not in html
    for text in (html, (WEBAPP / "app.css").read_text()):
        assert not re.search(r"(src|href)=\"(https?:)?//", text)
        assert "@import" not in text and "url(http" not in text


def test_bundle_digest_is_sha256sum_of_the_listing() -> None:
    lines = "".join(
        f"{hashlib.sha256((WEBAPP / name).read_bytes()).hexdigest()}  {name}\n"
        for name in sorted(p.name for p in WEBAPP.iterdir())
    )
    assert bundle_digest() == hashlib.sha256(lines.encode()).hexdigest()
    assert [name for name, _ in file_digests()] == ["app.css", "app.js", "index.html", "sw.js"]


def test_security_md_quotes_the_committed_bundle_digest() -> None:
    # `make web` prints it; a rebuilt bundle needs its new digest in docs/SECURITY.md.
    assert f"`{bundle_digest()}`" in SECURITY.read_text()
