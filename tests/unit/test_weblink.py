"""Unit tests for ferry.protocol.weblink: the relay's web address and the browser link."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.config import RelayConfig
from ferry.protocol.rendezvous import MAX_LINE, NameplateAssigned, encode
from ferry.protocol.weblink import MAX_WEB_URL, browser_link, secure_context, web_url_problem

CODE = "7-guitar-orbit-velvet"

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
)
web_urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https"]),
    hosts,
    st.one_of(st.just(""), st.integers(0, 65535).map(lambda port: f":{port}")),
    st.sampled_from(["", "/", "/ferry/", "/app?lang=en"]),
).filter(lambda url: len(url) <= MAX_WEB_URL)


@pytest.mark.parametrize(
    "url",
    [
        "https://relay.example:9021/",
        "https://relay.example",
        "http://127.0.0.1:9021",
        "https://[2001:db8::1]:9021/ferry/",
        "https://xn--rlay-9oa.example/",
        "HTTPS://Relay.Example/",
        "https://relay.example/app?lang=en",
    ],
)
def test_web_url_problem_usable_address_gives_none(url: str) -> None:
    assert web_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "empty"),
        ("ftp://relay.example/", "https://"),
        ("relay.example:9021", "https://"),
        ("//relay.example/", "https://"),
        ("https://", "host"),
        ("https:///path", "host"),
        ("https://exa_mple/", "host"),
        ("https://-relay.example/", "host"),
        ("https://relay..example/", "host"),
        ("https://[not-v6]/", "host"),
        ("https://[127.0.0.1]/", "host"),
        ("https://relay.example:99999/", "port"),
        ("https://relay.example:http/", "port"),
        ("https://user:secret@relay.example/", "password"),
        ("https://relay.example/#top", "fragment"),
        ("https://relay.example/#", "fragment"),
        ("https://relay.example/a b", "spaces"),
        ("https://relais.exämple/", "ASCII"),
        ("https://relay.example/\x1b[2J", "ASCII"),
        ("https://relay.example/" + "x" * MAX_WEB_URL, "long"),
    ],
)
def test_web_url_problem_unusable_address_says_why(url: str, words: str) -> None:
    problem = web_url_problem(url)
    assert problem is not None and words in problem, problem


@given(st.text(max_size=MAX_WEB_URL + 20))
def test_web_url_problem_any_text_gives_none_or_a_sentence_never_raises(url: str) -> None:
    problem = web_url_problem(url)
    assert problem is None or problem


@given(web_urls)
def test_web_url_problem_generated_usable_addresses_give_none(url: str) -> None:
    assert web_url_problem(url) is None


@given(web_urls, st.integers(1, 999_999_999))
def test_nameplate_line_with_the_longest_nameplate_and_any_usable_address_fits_the_line(
    url: str, nameplate: int
) -> None:
    line = encode(NameplateAssigned(nameplate, url))
    assert len(line) <= MAX_LINE and line.endswith(url.encode() + b"\n")


@given(web_urls)
def test_browser_link_puts_the_code_in_the_fragment_after_a_path(url: str) -> None:
    link = browser_link(url, CODE)
    parts = urllib.parse.urlsplit(link)
    assert parts.fragment == CODE
    assert parts.path.startswith("/")
    assert link in (f"{url}#{CODE}", f"{url}/#{CODE}")  # the relay's address, untouched


@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://relay.example:9021/", "https://relay.example:9021/#" + CODE),
        ("https://relay.example:9021", "https://relay.example:9021/#" + CODE),
        ("https://relay.example/ferry/", "https://relay.example/ferry/#" + CODE),
        ("https://relay.example/app?lang=en", "https://relay.example/app?lang=en#" + CODE),
    ],
)
def test_browser_link_examples(url: str, link: str) -> None:
    assert browser_link(url, CODE) == link


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("https://relay.example/", True),
        ("http://localhost:9021/", True),
        ("http://app.localhost/", True),
        ("http://127.0.0.2:9021/", True),
        ("http://[::1]:9021/", True),
        ("http://relay.example:9021/", False),
        ("http://192.0.2.7/", False),
    ],
)
def test_secure_context_is_https_or_this_machine(url: str, secure: bool) -> None:
    assert secure_context(url) is secure


def test_relay_config_refuses_an_unusable_web_url_and_one_without_the_web_app() -> None:
    assert RelayConfig(web_url="https://relay.example:9021/").problems() == []
    (problem,) = RelayConfig(web_url="ftp://relay.example/").problems()
    assert problem.startswith("--web-url 'ftp://relay.example/' is not usable: ")
    (problem,) = RelayConfig(web_url="https://relay.example/", web=False).problems()
    assert "--no-web" in problem
