"""The headless Chromium the browser tests and bench/web.py drive (Debian's package,
launched by Playwright for Python; never `playwright install`)."""

from __future__ import annotations

from typing import Any, Final

CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""Flags for a quiet, reproducible browser: nothing fetched in the background."""


def slow_disk_script(write_ms: int) -> str:
    """An init script giving the page a File System Access picker whose file takes each
    write `write_ms` late: a disk slower than the network (the page's service worker and
    folder picker are removed, so save.js streams a single file to it). It keeps in
    `window.__disk` the bytes it took, their Adler-32 (`a`, `b`: zlib.adler32 is
    `b << 16 | a`) and whether it was closed."""
    return f"""
delete Navigator.prototype.serviceWorker;
delete window.showDirectoryPicker;
window.__disk = {{ bytes: 0, a: 1, b: 0, closed: false }};
window.showSaveFilePicker = async (options) => ({{
  name: options.suggestedName,
  createWritable: async () => ({{
    async write(data) {{
      await new Promise((resolve) => setTimeout(resolve, {int(write_ms)}));
      const bytes = new Uint8Array(data);
      let {{ a, b }} = window.__disk;
      for (let i = 0; i < bytes.length; i += 1) {{
        a += bytes[i];
        b += a;
        if ((i & 4095) === 4095) {{ a %= 65521; b %= 65521; }}
      }}
      window.__disk.a = a % 65521;
      window.__disk.b = b % 65521;
      window.__disk.bytes += bytes.length;
    }},
    async close() {{ window.__disk.closed = true; }},
    async abort() {{}},
  }}),
}});
"""


def live_heap(tab: Any, session: Any) -> int:
    """The page's live JavaScript memory in bytes, over a CDP session of `tab`: V8's heap
    plus the backing stores of ArrayBuffers (where received bytes would pile up), after
    a full garbage collection, so garbage not yet collected is not counted as held."""
    # Twice, a moment apart: V8 frees ArrayBuffer backing stores after a
    # collection, concurrently, so one collection still counts the dead.
    session.send("HeapProfiler.collectGarbage")
    tab.wait_for_timeout(50)
    session.send("HeapProfiler.collectGarbage")
    usage = session.send("Runtime.getHeapUsage")
    # Without the backing stores a bound on this would hold vacuously.
    assert "backingStorageSize" in usage, usage
    return int(usage["usedSize"]) + int(usage["backingStorageSize"])
