"""What crosses between a client's terminal and its peer: text the peer chose, shown
safely, and text we send, kept to what the peer already knows.

Theory of operation. Everything the peer sends is sealed, so it is authentic,
but the peer is whoever holds the code: its ABORT and ANSWER messages and
its file name are its choice of characters. Shown raw, an escape sequence
rewrites the terminal's title, clears the screen or prints a fake "transfer
complete"; so every such string goes through `shown` (names.display_name's
rule: control, format and invisible characters become "?") before it
reaches stderr. The other way, an ABORT we send says which class of error
stopped us and names only the offered file, never a local path.

Pure functions, no I/O.
"""

from __future__ import annotations

from ferry.errors import FerryError
from ferry.names import display_name


def shown(text: str) -> str:
    """Peer-chosen text, safe for one line of a terminal."""
    return display_name(text)


def abort_text(error: FerryError, offered: str) -> str:
    """Why the receiver stops, for the sender: the error's class sentence and the
    offered name only (an error's own message may hold a local path)."""
    sentence = (type(error).__doc__ or "it failed").strip().rstrip(".")
    return f"receiver: could not store {offered!r}: {sentence}"


def stored_notice(offered: str, stored: str) -> str | None:
    """The line to show when the stored name needs the user's eye: it differs from
    the offered one, or it starts with a dot (hidden, and some dotfiles run code:
    .bash_login, .profile). None when there is nothing to say."""
    if stored == offered and not stored.startswith("."):
        return None
    hidden = " (a hidden dotfile)" if stored.startswith(".") else ""
    if stored == offered:
        return f'stored "{shown(stored)}"{hidden}'
    return f'stored "{shown(stored)}"{hidden}, offered as "{shown(offered)}"'
