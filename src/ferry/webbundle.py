"""The web app shipped in the package (src/ferry/webapp), and its SHA-256.

Theory of operation. web/build.mjs builds web/src into four files in
src/ferry/webapp (index.html, app.js, app.css and the service worker
sw.js), committed so that the relay serves them with a bare Python. The
browser path trusts the relay to serve honest code, so anyone should be
able to check what it serves: the bundle's digest is the SHA-256 of the
`sha256sum`-style listing of every file in the directory, in byte order
of their names, so

    cd src/ferry/webapp && sha256sum * | sha256sum

prints the same value as `scripts/webapp_sha256.py` (and fetching the
four files from a relay and running the same command checks a live one).
Standard library only: the relay may print it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

WEBAPP: Final = Path(__file__).resolve().parent / "webapp"
"""The built web app in the package (may be absent in a stripped install)."""


def file_digests(root: Path = WEBAPP) -> list[tuple[str, str]]:
    """(name, SHA-256 hex) of every regular file in root, sorted by name's bytes."""
    names = sorted((p.name for p in root.iterdir() if p.is_file()), key=lambda n: n.encode())
    return [(name, hashlib.sha256((root / name).read_bytes()).hexdigest()) for name in names]


def listing(root: Path = WEBAPP) -> str:
    """What `sha256sum *` prints in root."""
    return "".join(f"{digest}  {name}\n" for name, digest in file_digests(root))


def bundle_digest(root: Path = WEBAPP) -> str:
    """The SHA-256 of the whole bundle (module docstring)."""
    return hashlib.sha256(listing(root).encode()).hexdigest()
