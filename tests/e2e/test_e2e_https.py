"""https on the relay's port (--tls-cert, --tls-key) with a real certificate.

Each module run makes a CA and a server certificate for relay.ferry.test
(ferry_testing/certs.py). Chromium trusts the server key by its SPKI hash
(--ignore-certificate-errors-spki-list, no system trust store touched) and
reaches the relay by that name (--host-resolver-rules), so the page is a
secure context on a host that is not localhost: CLI -> browser and
browser -> CLI run over https, and plain http on the same name explains
itself and does nothing. Also here: the relay's start-up line with the
bundle's SHA-256, and bad certificate files refused at start-up.

Locally the browser tests skip without Chromium or Playwright; with CI=true
they must run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.errors import EXIT_TLS_FILES
from ferry_testing.certs import Certs, make_certs
from ferry_testing.chromium import CHROMIUM
from ferry_testing.procs import Relay, clean_env
from tests.e2e.harness import REPO, Result, Sender, invocation
from tests.e2e.test_e2e_browser import (
    ARGS,
    NO_PICKERS,
    TIMEOUT_MS,
    _missing,
    _sha256,
    _status,
    _wait_status,
)

pytestmark = pytest.mark.timeout(240)
NAME = "relay.ferry.test"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), (NAME,))


@pytest.fixture
def tls_relay(relay_factory: Callable[..., Relay], certs: Certs) -> Relay:
    return relay_factory(extra_args=["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)])


@pytest.fixture(scope="module")
def https_browser(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -r requirements/dev.txt)")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    args = [arg for arg in ARGS if not arg.startswith("--host-resolver-rules=")]
    args += [
        f"--host-resolver-rules=MAP {NAME} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={certs.spki_sha256}",
    ]
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        # A persistent profile: Chromium honours the SPKI list only with --user-data-dir.
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=args, headless=True,
            accept_downloads=True,
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(https_browser: Any) -> Iterator[Any]:
    https_browser.add_init_script(NO_PICKERS)
    tab = https_browser.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        yield tab
    finally:
        tab.close()


def _url(relay: Relay, scheme: str = "https") -> str:
    return f"{scheme}://{NAME}:{relay.port}/"


@pytest.mark.slow  # a real Chromium: make test-slow
def test_cli_file_to_browser_over_https(
    tls_relay: Relay, start_send: Callable[..., Sender], page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "photo.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    sender = start_send(tls_relay, src)
    page.goto(f"{_url(tls_relay)}#{sender.code}")
    assert page.evaluate("window.isSecureContext") is True
    save = page.get_by_role("button", name="Save")
    from playwright.sync_api import expect

    expect(save).to_be_enabled()
    with page.expect_download(timeout=TIMEOUT_MS * 2) as info:
        save.click()
    saved = tmp_path / "downloads" / "photo.bin"
    info.value.save_as(str(saved))
    assert _sha256(saved) == _sha256(src)
    assert _wait_status(page, r"done$").startswith("received photo.bin")
    assert sender.wait() == 0, sender.stderr()
    assert "role=https" in tls_relay.log()


@pytest.mark.slow  # a real Chromium: make test-slow
def test_browser_file_to_cli_over_https(
    tls_relay: Relay, run_receive: Callable[..., Result], page: Any, tmp_path: Path
) -> None:
    src = tmp_path / "notes.bin"
    src.write_bytes(os.urandom(2 * 1024 * 1024 + 11))
    page.goto(_url(tls_relay))
    page.get_by_test_id("file-input").set_input_files(str(src))
    code_box = page.get_by_test_id("code")
    from playwright.sync_api import expect

    expect(code_box).to_have_text(re.compile(r"^\d+-[a-z]+-[a-z]+-[a-z]+$"))
    code = code_box.inner_text()
    assert page.get_by_test_id("link").inner_text() == f"{_url(tls_relay)}#{code}"
    out = tmp_path / "out"
    out.mkdir()
    # The CLI speaks to the same port in the clear: its records are end-to-end sealed.
    result = run_receive(tls_relay, code, out)
    assert result.returncode == 0, result.stderr
    assert _sha256(out / "notes.bin") == _sha256(src)
    assert _wait_status(page, r"done$").startswith("sent notes.bin")


@pytest.mark.slow  # a real Chromium: make test-slow
def test_plain_http_on_the_same_name_explains_and_does_nothing(tls_relay: Relay, page: Any) -> None:
    page.goto(f"{_url(tls_relay, 'http')}#7-guitar-orbit-velvet")
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="This page needs a secure connection")).to_be_visible()
    expect(page.get_by_text("https", exact=True)).to_be_visible()
    expect(page.get_by_test_id("file-input")).to_be_hidden()
    assert _status(page).inner_text() == "not available over plain http: nothing was done"


@pytest.mark.own_relay
def test_the_relay_prints_the_bundles_sha256_at_start_up(relay: Relay) -> None:
    script = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "webapp_sha256.py")],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    digest = script.stdout.splitlines()[-1].split()[0]
    [line] = [line for line in relay.log().splitlines() if "bundle SHA-256" in line]
    assert f"bundle SHA-256 {digest} " in line


@pytest.mark.parametrize("broken", ["missing", "not-pem", "wrong-key"])
def test_bad_certificate_files_are_one_line_and_their_own_exit_code(
    broken: str, certs: Certs, tmp_path: Path
) -> None:
    cert, key = certs.cert, certs.key
    if broken == "missing":
        cert = tmp_path / "no-such.pem"
    elif broken == "not-pem":
        cert = tmp_path / "garbage.pem"
        cert.write_bytes(os.urandom(300))
    else:
        key = make_certs(tmp_path / "other").key
    argv, cwd = invocation("relay")
    done = subprocess.run(
        [*argv, "127.0.0.1:0", "-q", "--tls-cert", str(cert), "--tls-key", str(key)],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == EXIT_TLS_FILES, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("relay: error: --tls-")
    assert "Traceback" not in done.stderr
