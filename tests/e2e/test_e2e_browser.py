"""A real browser against the real CLI, through the relay's web front.

Chromium from the distribution (/usr/bin/chromium), headless, driven by
Playwright for Python (never its own downloaded browsers). The relay serves
the page (src/ferry/webapp) and bridges /ws; the other side is ./send or
./receive, or a second page. Covered: CLI -> browser (a 100 MiB file
streamed through the service worker and compared by SHA-256 from the
download directory, with the page's memory sampled meanwhile; a tree and
several files as one .zip, read back with zipfile; a text), browser -> CLI
(the file input, a text), browser -> browser (a file, a text), a wrong code
both ways, the in-memory download where the browser has no service worker,
and a page over plain http from a host that is not localhost (it explains
itself and does nothing).

Automation cannot answer the browser's native save dialogs, so the pages
here run without showSaveFilePicker and showDirectoryPicker (an init script
removes them); the service worker's download needs no dialog.

With FERRY_SCREENSHOTS=DIR the views are saved there (web-receive.png,
web-send.png, web-done.png, web-tree.png: docs/img holds the committed ones).

Locally these skip without Chromium or Playwright; with CI=true they must
run. A relay without a web front (src/ferry/relay/web.py) skips them.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry_testing.chromium import ARGS as QUIET_ARGS
from ferry_testing.chromium import CHROMIUM, live_heap
from ferry_testing.procs import Relay
from tests.e2e.harness import REPO, Registry, Result, Sender, wrong_words_code
from tests.e2e.test_e2e_anything import start_send_with

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # a real Chromium: make test-slow
ARGS = [
    *QUIET_ARGS,
    # An origin that is not localhost, for the plain-http test; nothing else uses it.
    "--host-resolver-rules=MAP insecure.ferry.test 127.0.0.1",
]
TIMEOUT_MS = 60_000
NO_PICKERS = "delete window.showSaveFilePicker; delete window.showDirectoryPicker;"
NO_SERVICE_WORKER = "delete Navigator.prototype.serviceWorker;"
STREAMED = "/ferry-download/"
"""The path of a download the service worker streams (web/src/sw/protocol.js)."""
MiB = 1 << 20
STREAMED_PEAK = 40 * MiB
"""What the page may hold while it streams a 100 MiB download: the save path keeps a few
records (download.js, sw.js) and the paced WebSocketStream a few messages (socket.js);
measured peaks 7.5 to 8.4 MiB (3 to 28 MiB before receiving was paced, when messages
queued in the page until read). Holding the file would be 100 MiB or more. A disk slower
than the network: test_e2e_browser_views.py."""


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -r requirements/dev.txt)")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def web_relay(relay: Relay) -> Relay:
    if not (REPO / "src" / "ferry" / "relay" / "web.py").exists():
        pytest.skip("this relay has no web front (src/ferry/relay/web.py)")
    try:
        with urllib.request.urlopen(f"http://{relay}/", timeout=10) as answer:
            served = answer.status == 200 and b"app.js" in answer.read()
    except OSError:
        served = False
    if not served:
        _missing("this relay serves no web app")
    return relay


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    context.add_init_script(NO_PICKERS)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        yield tab
    finally:
        context.close()


def _shot(tab: Any, name: str) -> None:
    where = os.environ.get("FERRY_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(where) / name), full_page=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _status(tab: Any) -> Any:
    return tab.get_by_test_id("status")


def _wait_status(tab: Any, pattern: str) -> str:
    from playwright.sync_api import expect

    expect(_status(tab)).to_have_text(re.compile(pattern), timeout=TIMEOUT_MS)
    text: str = _status(tab).inner_text()
    return text


class HeapProbe:
    """The page's live JavaScript memory, sampled over CDP while a transfer runs: V8's
    heap plus the backing stores of ArrayBuffers (where received bytes would pile up),
    each sample after a full garbage collection, so garbage not yet collected is not
    counted as held."""

    def __init__(self, tab: Any) -> None:
        self.tab = tab
        self.session = tab.context.new_cdp_session(tab)
        self.peak = 0
        self.during = 0

    def sample(self) -> None:
        self.peak = max(self.peak, live_heap(self.tab, self.session))

    def until(self, tab: Any, pattern: str) -> None:
        """Sample as often as it can until the status line matches; `during` counts
        the samples taken while it said "receiving"."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + TIMEOUT_MS / 1000 * 2
        while not wanted.search(text := _status(tab).inner_text()):
            assert time.monotonic() < deadline, text
            self.sample()
            self.during += text.startswith("receiving: ")


def _write_100_mib(path: Path) -> None:
    with open(path, "wb") as f:
        for i in range(100):  # 100 MiB, every MiB different
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))


def test_cli_file_to_browser_download(
    web_relay: Relay, start_send: Callable[..., Sender], page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "video.bin"
    _write_100_mib(src)
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{sender.code}")
    save = page.get_by_role("button", name="Save")
    from playwright.sync_api import expect

    expect(save).to_be_enabled()
    expect(page.get_by_test_id("offer")).to_have_text("Coming: video.bin, 100.0 MiB")
    _shot(page, "web-receive.png")
    probe = HeapProbe(page)
    probe.sample()
    with page.expect_download(timeout=TIMEOUT_MS * 2) as info:
        save.click()
    download = info.value
    assert STREAMED in download.url, "a service-worker stream, not a Blob in the page"
    assert download.suggested_filename == "video.bin"
    probe.until(page, r"done$")
    saved = tmp_path / "downloads" / "video.bin"
    download.save_as(str(saved))
    assert download.failure() is None
    assert _sha256(saved) == _sha256(src)
    assert _status(page).inner_text() == "received video.bin, 100.0 MiB: done"
    assert sender.wait() == 0, sender.stderr()
    assert "#" not in page.url, "the code stays out of the address bar"
    # Streamed: the page never holds the file (100 MiB).
    assert probe.during >= 1, "no sample while the bytes were coming"
    assert probe.peak < STREAMED_PEAK, f"the page held {probe.peak / MiB:.1f} MiB"


def test_the_sender_gone_fails_the_download_and_a_cancelled_download_stops_the_sender(
    web_relay: Relay, start_send: Callable[..., Sender], page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "video.bin"
    _write_100_mib(src)
    from playwright.sync_api import expect

    # The sender goes away mid-transfer: the browser's download fails, no short file.
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{sender.code}")
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name="Save").click()
    _wait_status(page, r"^receiving: ")
    sender.proc.kill()
    assert _wait_status(page, r"^failed: ").startswith("failed: the sender went away")
    assert info.value.failure() is not None, "the browser did not complete a short file"

    # The person cancels the download in the browser: the transfer stops, the sender is told.
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{sender.code}")
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name="Save").click()
    info.value.cancel()
    status = _wait_status(page, r"^failed: ")
    assert status == "failed: the download was cancelled in the browser", status
    assert sender.wait() != 0
    assert "the receiver failed: the download was cancelled in the browser" in sender.stderr()


def test_without_service_worker_the_file_is_kept_in_memory(
    web_relay: Relay, start_send: Callable[..., Sender], browser: Any, tmp_path: Path
) -> None:
    src = tmp_path / "photo.jpg"
    src.write_bytes(os.urandom(8 * MiB))
    sender = start_send(web_relay, src)
    context = browser.new_context(accept_downloads=True)
    context.add_init_script(NO_PICKERS + NO_SERVICE_WORKER)
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(f"http://{web_relay}/#{sender.code}")
        from playwright.sync_api import expect

        note = tab.locator("#save-note")
        expect(note).to_contain_text("in memory until it is complete")
        expect(note).to_contain_text("at most 512.0 MiB")
        with tab.expect_download(timeout=TIMEOUT_MS) as info:
            tab.get_by_role("button", name="Save").click()
        download = info.value
        assert download.url.startswith("blob:"), "a Blob the page held, not a stream"
        saved = tmp_path / "got" / "photo.jpg"
        download.save_as(str(saved))
        assert saved.read_bytes() == src.read_bytes()
        _wait_status(tab, r"^received photo.jpg, 8.0 MiB: done$")
    finally:
        context.close()
    assert sender.wait() == 0, sender.stderr()


def _make_tree(root: Path) -> dict[str, bytes]:
    """A tree with nested folders, an empty file, an empty folder and a non-ASCII name."""
    files = {
        "album/readme.txt": b"the album\n",
        "album/empty.txt": b"",
        "album/photos/2024/beach.raw": os.urandom(3 * MiB + 5),
        "album/photos/2024/caf\u00e9 \u2615.txt": "caf\u00e9 \u2615\n".encode(),
        "album/docs/notes/deep/leaf.bin": os.urandom(70_000),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "album" / "photos" / "2025").mkdir()
    return files


def _receive_zip(
    tab: Any, relay: Relay, code: str, where: Path, name: str, shot: str = ""
) -> zipfile.ZipFile:
    tab.goto(f"http://{relay}/#{code}")
    from playwright.sync_api import expect

    save = tab.get_by_role("button", name="Save")
    expect(save).to_be_enabled()
    expect(tab.locator("#save-note")).to_contain_text(name)
    if shot:
        _shot(tab, shot)
    with tab.expect_download(timeout=TIMEOUT_MS) as info:
        save.click()
    download = info.value
    assert STREAMED in download.url
    assert download.suggested_filename == name
    saved = where / name
    download.save_as(str(saved))
    assert download.failure() is None
    _wait_status(tab, r"done$")
    # The end record's directory offset and size meet exactly where it starts
    # (zipfile alone forgives a wrong size there; stricter tools do not).
    data = saved.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    size_cd, offset_cd = struct.unpack("<II", data[end + 12 : end + 20])
    assert offset_cd + size_cd == end
    archive = zipfile.ZipFile(saved)
    assert archive.testzip() is None
    return archive


def test_cli_tree_to_browser_as_one_zip(
    web_relay: Relay, procs: Registry, logdir: Path, page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = _make_tree(src)
    sender = start_send_with(procs, logdir, web_relay, [str(src / "album")])
    archive = _receive_zip(page, web_relay, sender.code, tmp_path, "album.zip", "web-tree.png")
    assert sender.wait() == 0, sender.stderr()
    got = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
    assert got == files
    dirs = {i.filename for i in archive.infolist() if i.is_dir()}
    assert "album/photos/2025/" in dirs, "an empty folder stays in the archive"
    assert {"album/", "album/photos/", "album/docs/notes/deep/"} <= dirs
    for info in archive.infolist():
        assert info.flag_bits & 0x800, "names are flagged UTF-8"
        assert info.compress_type == zipfile.ZIP_STORED
        if not info.is_dir():
            mtime = (src / info.filename).stat().st_mtime
            assert info.date_time == time.localtime(mtime - mtime % 2)[:6]
    # Extracted as a person would: everything lands under the folder's name.
    out = tmp_path / "out"
    archive.extractall(out)
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    status = _status(page).inner_text()
    assert status.startswith("received 5 files, 3.1 MiB in all"), status


def test_cli_several_files_to_browser_as_one_zip(
    web_relay: Relay, procs: Registry, logdir: Path, page: Any, tmp_path: Path
) -> None:
    first, second = tmp_path / "one.txt", tmp_path / "two.bin"
    first.write_text("one\n")
    second.write_bytes(os.urandom(200_000))
    sender = start_send_with(procs, logdir, web_relay, [str(first), str(second)])
    archive = _receive_zip(page, web_relay, sender.code, tmp_path / "got", "ferry-files.zip")
    assert sender.wait() == 0, sender.stderr()
    assert {i.filename: archive.read(i) for i in archive.infolist()} == {
        "one.txt": first.read_bytes(),
        "two.bin": second.read_bytes(),
    }


def test_browser_file_to_cli(
    web_relay: Relay, run_receive: Callable[..., Result], page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("file-input").set_input_files(str(src))
    code_box = page.get_by_test_id("code")
    from playwright.sync_api import expect

    expect(code_box).to_have_text(re.compile(r"^\d+-[a-z]+-[a-z]+-[a-z]+$"))
    code = code_box.inner_text()
    assert page.get_by_test_id("link").inner_text() == f"http://{web_relay}/#{code}"
    _shot(page, "web-send.png")
    out = tmp_path / "out"
    out.mkdir()
    result = run_receive(web_relay, code, out)
    assert result.returncode == 0, result.stderr
    assert _sha256(out / "report.pdf") == _sha256(src)
    assert _wait_status(page, r"done$") == "sent report.pdf (3.0 MiB): done"
    _shot(page, "web-done.png")


def test_text_both_ways(
    web_relay: Relay,
    procs: Registry,
    logdir: Path,
    run_receive: Callable[..., Result],
    page: Any,
    tmp_path: Path,
) -> None:
    sender = start_send_with(procs, logdir, web_relay, ["--text", "from the terminal, ünïcode ✓"])
    page.goto(f"http://{web_relay}/#{sender.code}")
    from playwright.sync_api import expect

    expect(page.get_by_test_id("text")).to_have_text("from the terminal, ünïcode ✓")
    _wait_status(page, r"done$")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    assert sender.wait() == 0, sender.stderr()

    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("text-input").fill("from the browser, ünïcode ✓")
    page.get_by_role("button", name="Send text").click()
    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    result = run_receive(web_relay, code_box.inner_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from the browser, ünïcode ✓"
    _wait_status(page, r"^sent a text: done$")


def test_wrong_code_both_ways(
    web_relay: Relay,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
    page: Any,
    tmp_path: Path,
) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a\n")
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{wrong_words_code(sender.code)}")
    assert "wrong code" in _wait_status(page, r"^failed: ")
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="Save")).to_be_hidden()
    sender.proc.kill()

    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("file-input").set_input_files(str(src))
    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    code = code_box.inner_text()
    out = tmp_path / "out"
    out.mkdir()
    wrong = run_receive(web_relay, wrong_words_code(code), out)
    assert wrong.returncode != 0 and "wrong code" in wrong.stderr
    _wait_status(page, r"wrong code.*\(1 of 3 attempts used\); waiting for the receiver$")
    assert run_receive(web_relay, code, out).returncode == 0
    assert (out / "a.txt").read_text() == "a\n"
    _wait_status(page, r"done$")


def test_plain_http_elsewhere_explains_and_does_nothing(web_relay: Relay, page: Any) -> None:
    page.goto(f"http://insecure.ferry.test:{web_relay.port}/#7-guitar-orbit-velvet")
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="This page needs a secure connection")).to_be_visible()
    expect(page.get_by_test_id("file-input")).to_be_hidden()
    assert _status(page).inner_text() == "not available over plain http: nothing was done"


def _other_tab(browser: Any) -> tuple[Any, Any]:
    """A second, separate browser profile (its own context) and a tab in it."""
    other = browser.new_context(accept_downloads=True)
    other.add_init_script(NO_PICKERS)
    tab = other.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    return other, tab


def test_browser_to_browser_file(web_relay: Relay, browser: Any, page: Any, tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("tab to tab\n" * 1000)
    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("file-input").set_input_files(str(src))
    from playwright.sync_api import expect

    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    other, tab = _other_tab(browser)
    try:
        tab.goto(page.get_by_test_id("link").inner_text())
        expect(tab.get_by_test_id("offer")).to_have_text("Coming: notes.txt, 10.7 KiB")
        with tab.expect_download(timeout=TIMEOUT_MS) as info:
            tab.get_by_role("button", name="Save").click()
        assert STREAMED in info.value.url
        saved = tmp_path / "got" / "notes.txt"
        info.value.save_as(str(saved))
        assert saved.read_bytes() == src.read_bytes()
        _wait_status(tab, r"done$")
    finally:
        other.close()
    _wait_status(page, r"^sent notes.txt \(10.7 KiB\): done$")


def test_browser_to_browser_text(web_relay: Relay, browser: Any, page: Any) -> None:
    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("text-input").fill("tab to tab, ünïcode ✓\nsecond line")
    page.get_by_role("button", name="Send text").click()
    from playwright.sync_api import expect

    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    other, tab = _other_tab(browser)
    try:
        tab.goto(f"http://{web_relay}/")
        tab.get_by_test_id("code-input").fill(code_box.inner_text())
        tab.get_by_role("button", name="Receive").click()
        expect(tab.get_by_test_id("text")).to_have_text("tab to tab, ünïcode ✓\nsecond line")
        _wait_status(tab, r"^text received: done$")
    finally:
        other.close()
    _wait_status(page, r"^sent a text: done$")


def test_cancel_refusal_and_peer_gone_are_final_states(
    web_relay: Relay,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
    page: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    src = tmp_path / "a.txt"
    src.write_text("new\n")
    # Cancel while waiting for a receiver: the code is given up.
    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("file-input").set_input_files(str(src))
    expect(page.get_by_test_id("code")).to_have_text(re.compile(r"^\d+-"))
    page.get_by_role("button", name="Cancel").click()
    assert _wait_status(page, r"^cancelled$") == "cancelled"
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()

    # A receiver that refuses (the file exists there), three times: the sender's attempts.
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old\n")
    page.get_by_test_id("file-input").set_input_files(str(src))
    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    code = code_box.inner_text()
    refused = run_receive(web_relay, code, out)
    assert refused.returncode != 0
    once = r"^the receiver refused: .*\(1 of 3 attempts used\); waiting for the receiver$"
    _wait_status(page, once)
    for _ in range(2):
        assert run_receive(web_relay, code, out).returncode != 0
    assert _wait_status(page, r"^failed: ").startswith("failed: the receiver refused")
    assert (out / "a.txt").read_text() == "old\n"

    # The sender goes away while the browser looks at the offer.
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{sender.code}")
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    sender.proc.kill()
    status = _wait_status(page, r"^failed: ")
    assert "went away" in status or "connection" in status, status


def test_send_view_shows_the_link_with_copy_and_a_qr_code_of_it(
    web_relay: Relay, browser: Any, run_receive: Callable[..., Result], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from ferry_testing.qr import decode_png

    origin = f"http://{web_relay}"
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(f"{origin}/")
        tab.get_by_test_id("text-input").fill("scan me")
        tab.get_by_role("button", name="Send text").click()
        code_box = tab.get_by_test_id("code")
        expect(code_box).to_have_text(re.compile(r"^\d+-[a-z]+-[a-z]+-[a-z]+$"))
        link = f"{origin}/#{code_box.inner_text()}"
        expect(tab.get_by_test_id("link")).to_have_text(link)
        assert tab.get_by_test_id("link").get_attribute("href") == link
        # The QR code on the screen, as a phone's camera would see it, reads as the link.
        qr = tab.get_by_role("img", name="QR code of the link")
        expect(qr).to_be_visible()
        assert decode_png(qr.screenshot()) == [link]
        tab.get_by_role("button", name="Copy link").click()
        expect(tab.locator("#copy-link-note")).to_have_text("copied")
        assert tab.evaluate("navigator.clipboard.readText()") == link
        result = run_receive(web_relay, code_box.inner_text(), tmp_path)
        assert result.returncode == 0 and result.stdout.strip() == "scan me", result.stderr
        _wait_status(tab, r"^sent a text: done$")
        # The code no longer works: neither its QR code nor the copy button stays.
        expect(qr).to_be_hidden()
        expect(tab.get_by_role("button", name="Copy link")).to_be_hidden()
    finally:
        context.close()
