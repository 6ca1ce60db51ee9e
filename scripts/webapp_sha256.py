"""Print the SHA-256 of the web app the relay serves (src/ferry/webapp), file by file and whole.

    python3 scripts/webapp_sha256.py [DIR]

The last line is the bundle's digest, the value docs/SECURITY.md quotes;
`cd src/ferry/webapp && sha256sum * | sha256sum` prints the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ferry.webbundle import WEBAPP, bundle_digest, listing


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else WEBAPP
    sys.stdout.write(listing(root))
    print(f"{bundle_digest(root)}  (bundle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
