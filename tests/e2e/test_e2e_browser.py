"""A real browser against the real CLI, through the relay's web front.

Chromium from the distribution (/usr/bin/chromium), headless, driven by
Playwright for Python (never its own downloaded browsers). The relay serves
the page (src/ferry/webapp) and bridges /ws; the other side is ./send or
./receive. Covered: CLI -> browser (a file compared by SHA-256 from the
download directory, a text), browser -> CLI (the file input, a text), a
wrong code both ways, and a page over plain http from a host that is not
localhost (it explains itself and does nothing).

Automation cannot answer the browser's native save dialog, so the pages
here run without showSaveFilePicker (an init script removes it): the
download path every browser has, the one Firefox and Safari take.

With FERRY_SCREENSHOTS=DIR the views are saved there (web-receive.png,
web-send.png, web-done.png: docs/img holds the committed ones).

Locally these skip without Chromium or Playwright; with CI=true they must
run. A relay without a web front (src/ferry/relay/web.py) skips them.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry_testing.procs import Relay
from tests.e2e.harness import REPO, Registry, Result, Sender, wrong_words_code
from tests.e2e.test_e2e_anything import start_send_with

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # a real Chromium: make test-slow
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # An origin that is not localhost, for the plain-http test; nothing else uses it.
    "--host-resolver-rules=MAP insecure.ferry.test 127.0.0.1",
]
TIMEOUT_MS = 60_000
NO_PICKERS = "delete window.showSaveFilePicker; delete window.showDirectoryPicker;"


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


def test_cli_file_to_browser_download(
    web_relay: Relay, start_send: Callable[..., Sender], page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "video.bin"
    with open(src, "wb") as f:
        for i in range(100):  # 100 MiB, every MiB different
            f.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{sender.code}")
    save = page.get_by_role("button", name="Save")
    from playwright.sync_api import expect

    expect(save).to_be_enabled()
    expect(page.get_by_test_id("offer")).to_contain_text("video.bin")
    _shot(page, "web-receive.png")
    with page.expect_download(timeout=TIMEOUT_MS * 2) as info:
        save.click()
    download = info.value
    assert download.suggested_filename == "video.bin"
    saved = tmp_path / "downloads" / "video.bin"
    download.save_as(str(saved))
    assert _sha256(saved) == _sha256(src)
    assert _wait_status(page, r"done$").startswith("received video.bin")
    assert sender.wait() == 0, sender.stderr()
    assert "#" not in page.url, "the code stays out of the address bar"


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
    assert _wait_status(page, r"done$") == "sent report.pdf (3.1 MB): done"
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


def test_browser_to_browser_file(web_relay: Relay, browser: Any, page: Any, tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("tab to tab\n" * 1000)
    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("file-input").set_input_files(str(src))
    from playwright.sync_api import expect

    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    other = browser.new_context(accept_downloads=True)
    other.add_init_script(NO_PICKERS)
    try:
        tab = other.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(page.get_by_test_id("link").inner_text())
        with tab.expect_download(timeout=TIMEOUT_MS) as info:
            tab.get_by_role("button", name="Save").click()
        saved = tmp_path / "got" / "notes.txt"
        info.value.save_as(str(saved))
        assert saved.read_bytes() == src.read_bytes()
        _wait_status(tab, r"done$")
    finally:
        other.close()
    _wait_status(page, r"^sent notes.txt \(11 kB\): done$")


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
