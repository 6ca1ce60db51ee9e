"""The web app's receive and done views, and a receiving page paced by its disk.

A real Chromium (as in test_e2e_browser.py, whose fixtures and helpers these
tests share) against the real ./send and ./receive through the relay's web
front. Covered: an offer of one file shows no empty list (a tree's lists its
files); after a success the page shows what moved and where it went, never
the spent code or its link, and "receive another" / "send another" lead back
to an empty form; a page whose disk is slower than the network holds a few
records, not the difference (WebSocketStream: app/socket.js), and a browser
without WebSocketStream still receives through the classic WebSocket.

A slow disk is a File System Access picker an init script provides
(ferry_testing/chromium.py, slow_disk_script: the service worker removed,
so save.js picks it): its writable waits before taking each record and
keeps an Adler-32 of what it took, checked against the file.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry_testing.chromium import slow_disk_script
from ferry_testing.procs import Relay
from tests.e2e.harness import Registry, Result, Sender
from tests.e2e.test_e2e_anything import start_send_with
from tests.e2e.test_e2e_browser import (
    STREAMED,
    TIMEOUT_MS,
    HeapProbe,
    _status,
    _wait_status,
    browser,
    page,
    web_relay,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # a real Chromium: make test-slow
__all__ = ["browser", "page", "web_relay"]  # fixtures, used by name

MiB = 1 << 20
SLOW_DISK_MS = 25
"""The slow disk's wait per write: one 128 KiB record per 25 ms is about 5 MB/s, several
times slower than a loopback relay delivers to the page."""
PACED_MIB = 48
PACED_PEAK = 16 * MiB
"""What a page receiving PACED_MIB onto the slow disk may hold. Paced, it holds the records
in flight: 3 to 4 MiB measured (once 10 MiB on a loaded machine), the page's own baseline
included. The classic WebSocket queued what the disk had not taken yet: most of the file
(20 to 35 MiB measured for 32 MiB)."""
NO_WEBSOCKETSTREAM = "delete window.WebSocketStream;"


def _visible_text(tab: Any) -> str:
    text: str = tab.inner_text("body")
    return text


def _empty_but_shown(tab: Any, selector: str) -> list[str]:
    """The ids of the children of `selector` that take room on the page with nothing in it."""
    found: list[str] = tab.evaluate(
        """(selector) => [...document.querySelector(selector).children]
            .filter((e) => getComputedStyle(e).display !== 'none' && !e.textContent.trim())
            .map((e) => e.id || e.tagName)""",
        selector,
    )
    return found


def test_an_offer_of_one_file_shows_no_empty_list_and_a_tree_lists_its_files(
    web_relay: Relay, procs: Registry, logdir: Path, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    src = tmp_path / "notes.txt"
    src.write_text("one file\n")
    sender = start_send_with(procs, logdir, web_relay, [str(src)])
    page.goto(f"http://{web_relay}/#{sender.code}")
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    expect(page.get_by_test_id("offer")).to_have_text("Coming: notes.txt, 9 B")
    assert _empty_but_shown(page, "#offer") == [], "an empty element leaves a gap in the offer"
    expect(page.locator("#offer-list")).to_be_hidden()
    page.get_by_role("button", name="Decline").click()
    _wait_status(page, r"^declined$")
    sender.proc.kill()

    tree = tmp_path / "album"
    tree.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tree / name).write_bytes(b"x" * 10)
    sender = start_send_with(procs, logdir, web_relay, [str(tree)])
    page.goto(f"http://{web_relay}/#{sender.code}")
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    assert _empty_but_shown(page, "#offer") == []
    expect(page.locator("#offer-list li")).to_have_text(
        ["album/a.jpg (10 B)", "album/b.jpg (10 B)"]
    )
    sender.proc.kill()


def test_the_done_view_after_receiving_says_what_and_where_and_shows_no_code(
    web_relay: Relay, start_send: Callable[..., Sender], page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    src = tmp_path / "holiday.mp4"
    src.write_bytes(os.urandom(MiB + 3))
    sender = start_send(web_relay, src)
    page.goto(f"http://{web_relay}/#{sender.code}")
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name="Save").click()
    assert STREAMED in info.value.url
    _wait_status(page, r"^received holiday.mp4, 1.0 MiB: done$")
    assert sender.wait() == 0, sender.stderr()
    done = page.get_by_test_id("done")
    expect(done).to_be_visible()
    expect(done.get_by_role("heading")).to_have_text("Received")
    expect(page.get_by_test_id("done-what")).to_have_text("holiday.mp4, 1.0 MiB")
    expect(page.get_by_test_id("done-where")).to_have_text(
        "Your browser saved it as a download, holiday.mp4, in its downloads folder."
    )
    # The spent code is nowhere: not in the text, not in the code field, not in a link.
    expect(page.get_by_test_id("code-input")).to_be_hidden()
    assert sender.code not in _visible_text(page)
    assert page.locator(f'a[href*="{sender.code}"]:visible').count() == 0

    page.get_by_role("button", name="Receive another").click()
    expect(done).to_be_hidden()
    expect(page.get_by_test_id("code-input")).to_be_visible()
    expect(page.get_by_test_id("code-input")).to_have_value("")
    expect(page.get_by_test_id("code-input")).to_be_focused()
    expect(page.get_by_test_id("file-input")).to_be_visible()
    assert _status(page).inner_text() == "ready"


def test_the_done_view_after_sending_shows_no_code_link_or_qr_and_sends_again(
    web_relay: Relay, run_receive: Callable[..., Result], page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(2 * MiB))
    page.goto(f"http://{web_relay}/")
    page.get_by_test_id("file-input").set_input_files(str(src))
    code_box = page.get_by_test_id("code")
    expect(code_box).to_have_text(re.compile(r"^\d+-[a-z]+-[a-z]+-[a-z]+$"))
    code = code_box.inner_text()
    out = tmp_path / "out"
    out.mkdir()
    result = run_receive(web_relay, code, out)
    assert result.returncode == 0, result.stderr
    assert _wait_status(page, r"done$") == "sent report.pdf (2.0 MiB): done"
    done = page.get_by_test_id("done")
    expect(done).to_be_visible()
    expect(done.get_by_role("heading")).to_have_text("Sent")
    expect(page.get_by_test_id("done-what")).to_have_text("report.pdf (2.0 MiB)")
    expect(page.get_by_test_id("done-where")).to_contain_text("The receiver has it")
    # The code worked once: neither it, nor its link, nor its QR code is shown any more.
    for hook in ("code", "link", "qr"):
        expect(page.get_by_test_id(hook)).to_be_hidden()
    assert code not in _visible_text(page)
    assert page.locator(f'a[href*="{code}"]:visible').count() == 0
    assert "no longer works" not in _visible_text(page)

    page.get_by_role("button", name="Send another").click()
    expect(done).to_be_hidden()
    expect(page.get_by_test_id("file-input")).to_be_enabled()
    assert _status(page).inner_text() == "ready"
    page.get_by_test_id("text-input").fill("and a second one")
    page.get_by_role("button", name="Send text").click()
    expect(code_box).to_have_text(re.compile(r"^\d+-"))
    assert code_box.inner_text() != code, "a new transfer, a new code"
    second = run_receive(web_relay, code_box.inner_text(), tmp_path)
    assert second.returncode == 0 and second.stdout.strip() == "and a second one", second.stderr
    _wait_status(page, r"^sent a text: done$")
    expect(page.get_by_test_id("done-what")).to_have_text("A text message")


def test_a_received_text_stays_on_the_done_view_with_copy(
    web_relay: Relay, procs: Registry, logdir: Path, page: Any
) -> None:
    from playwright.sync_api import expect

    sender = start_send_with(procs, logdir, web_relay, ["--text", "see you at nine"])
    page.goto(f"http://{web_relay}/#{sender.code}")
    _wait_status(page, r"^text received: done$")
    expect(page.get_by_test_id("text")).to_have_text("see you at nine")
    expect(page.get_by_test_id("text")).to_be_visible()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.get_by_test_id("done-what")).to_have_text("A text message")
    assert sender.code not in _visible_text(page)
    page.get_by_role("button", name="Send something").click()
    expect(page.get_by_test_id("text")).to_be_hidden()
    expect(page.get_by_test_id("file-input")).to_be_focused()


def _slow_disk_transfer(
    browser: Any,
    relay: Relay,
    start_send: Callable[..., Sender],
    path: Path,
    mib: int,
    extra_script: str = "",
) -> tuple[HeapProbe, str]:
    """Send `mib` MiB of random bytes from ./send to a page saving onto the slow disk,
    sampling the page's memory; checks what the disk got, and returns the probe and the
    done view's line saying where the file went."""
    data = os.urandom(mib * MiB)
    path.write_bytes(data)
    sender = start_send(relay, path)
    context = browser.new_context()
    context.add_init_script(slow_disk_script(SLOW_DISK_MS) + extra_script)
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(f"http://{relay}/#{sender.code}")
        from playwright.sync_api import expect

        expect(tab.locator("#save-note")).to_contain_text("Pick where to save it")
        probe = HeapProbe(tab)
        probe.sample()
        tab.get_by_role("button", name="Save").click()
        probe.until(tab, r"done$|^failed")
        assert _status(tab).inner_text() == f"received {path.name}, {mib}.0 MiB: done"
        disk: dict[str, Any] = tab.evaluate("window.__disk")
        where = tab.evaluate("document.querySelector('[data-testid=done-where]')?.textContent")
    finally:
        context.close()
    assert disk["closed"] and disk["bytes"] == len(data)
    assert (disk["b"] << 16 | disk["a"]) == zlib.adler32(data), "the disk got other bytes"
    assert sender.wait() == 0, sender.stderr()
    return probe, str(where)


def test_a_disk_slower_than_the_network_paces_the_transfer_instead_of_filling_the_page(
    web_relay: Relay, start_send: Callable[..., Sender], browser: Any, tmp_path: Path
) -> None:
    probe, where = _slow_disk_transfer(
        browser, web_relay, start_send, tmp_path / "big.bin", PACED_MIB
    )
    assert probe.during >= 5, "too few samples while the bytes were coming"
    assert probe.peak < PACED_PEAK, f"the page held {probe.peak / MiB:.1f} MiB"
    assert where == "It was written to big.bin, the file you picked."


def test_without_websocketstream_the_page_receives_through_the_classic_websocket(
    web_relay: Relay, start_send: Callable[..., Sender], browser: Any, tmp_path: Path
) -> None:
    _, where = _slow_disk_transfer(
        browser, web_relay, start_send, tmp_path / "small.bin", 4, NO_WEBSOCKETSTREAM
    )
    assert where == "It was written to small.bin, the file you picked."
