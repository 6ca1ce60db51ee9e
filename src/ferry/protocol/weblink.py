"""The relay's web address, and the link a browser receiver opens.

Theory of operation. A relay that serves the web app may be told its public
base URL (`./relay --web-url https://relay.example:9021/`); it hands that URL
to the senders that ask for it, on their NAMEPLATE line (rendezvous.py), and a
sender at a terminal prints `URL#CODE`: the code travels in the fragment,
which a browser never sends to any server. The page behind the URL reads it
and receives at once.

Rules this module owns, for the relay (checking its option) and the client
(checking what a relay said) alike:

- The scheme is http or https, there is a host, an optional port, an
  optional path and query; no `user:password@` (the link is handed to other
  people) and no fragment (the code goes there).
- The URL is printable ASCII without spaces (a word of a rendezvous line;
  an internationalised host is given in its xn-- form) and at most
  MAX_WEB_URL bytes, so that `NAMEPLATE <n> <url>` fits in the line limit.

Standard library only (the relay imports it); no I/O.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Final

MAX_WEB_URL: Final = 100
"""Longest web URL, in bytes: `NAMEPLATE <9 digits> <url>` LF fits in the 128-byte line."""

_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_PRINTABLE: Final = re.compile(r"[!-~]+")  # printable ASCII, no space


def web_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a relay's web address, in words; None when usable."""
    if not url:
        return "it is empty"
    if not _PRINTABLE.fullmatch(url):
        return "it must be printable ASCII without spaces (an international name in its xn-- form)"
    if len(url) > MAX_WEB_URL:
        return f"it is {len(url)} characters long; at most {MAX_WEB_URL} fit"
    if "#" in url:
        return "it must have no #fragment (the code goes there)"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # unbalanced or invalid [brackets]
        return "it must name a host (https://relay.example:9021/)"
    if parts.scheme.lower() not in ("http", "https"):
        return "it must start with https:// (or http://)"
    if "@" in parts.netloc:
        return "it must not hold a user name or password"
    host = parts.hostname or ""
    if not _valid_host(host, bracketed=parts.netloc.startswith("[")):
        return "it must name a host (https://relay.example:9021/)"
    try:
        parts.port  # noqa: B018 (urllib checks the port when it is read)
    except ValueError:
        return "its port must be a number from 0 to 65535"
    return None


def _valid_host(host: str, bracketed: bool) -> bool:
    if bracketed:
        try:
            return ipaddress.ip_address(host).version == 6
        except ValueError:
            return False
    return bool(_HOSTNAME.fullmatch(host))


def secure_context(url: str) -> bool:
    """Whether a browser gives a page at ``url`` WebCrypto: https, or http from the
    machine itself (localhost, 127.0.0.0/8, [::1]); the web app does nothing elsewhere."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "https":
        return True
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def browser_link(url: str, code: str) -> str:
    """The link that opens the web app at ``url`` and receives with ``code``.

    ``url`` passed web_url_problem(); a URL without a path gets "/" so that
    the fragment follows a path, as a person would write it.
    """
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path or "/", fragment=code))
