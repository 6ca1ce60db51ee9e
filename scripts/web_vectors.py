"""Write web/test/vectors.json and web/src/core/wordlist.js from ferry's Python modules.

Usage: .venv/bin/python scripts/web_vectors.py [--check]

The vectors pin the browser core (web/src/core) to the Python protocol; the
logic lives in ferry_testing/web_vectors.py. With --check nothing is written:
the exit status is 1 if either committed file is stale (tests/unit/test_web_vectors.py
runs the same check).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ferry_testing.web_vectors import (
    VECTORS_PATH,
    WORDLIST_JS_PATH,
    build,
    render,
    wordlist_module,
)


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for path, text in ((VECTORS_PATH, render(build())), (WORDLIST_JS_PATH, wordlist_module())):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if check else 'wrote'}: {path}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
