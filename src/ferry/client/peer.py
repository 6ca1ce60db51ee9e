"""What crosses between a client's terminal and its peer: text the peer chose, shown
safely, and text we send, kept to what the peer already knows.

Theory of operation. Everything the peer sends is sealed, so it is authentic,
but the peer is whoever holds the code: its ABORT and ANSWER messages and
its file name are its choice of characters. Shown raw, an escape sequence
rewrites the terminal's title, clears the screen or prints a fake "transfer
complete"; so every such string goes through `shown` (names.display_name's
rule: control, format and invisible characters become "?") before it
reaches stderr. The other way, an ABORT we send says which class of error
stopped us and names only the offered file, never a local path (abort_for:
one rule for both sides).

Pure functions, no I/O.
"""

from __future__ import annotations

from ferry.client.progress import how_far
from ferry.errors import ConnectionLost, FerryError, NoSpace, RefusedByPeer, SourceChanged
from ferry.names import display_name, same_name
from ferry.protocol import messages


def shown(text: str) -> str:
    """Peer-chosen text, safe for one line of a terminal."""
    return display_name(text)


def lost(peer: str, done: int | None = None, total: int = 0, during: str = "") -> str:
    """Why a paired connection ended, when it ended without a word (no ABORT).

    The relay joins two TCP connections: when either end closes, the relay
    closes the other, and a relay that dies closes both. The two look the
    same from here, so the message names both ("42%" or "4.8 MiB" of a
    total not known: how far it got).
    """
    when = f" after {how_far(done, total)}" if done is not None else during
    return f"connection lost{when} (the relay or the {peer} went away)"


def abort_for(
    error: BaseException, side: str, offered: str, after: str = ""
) -> messages.Abort | None:
    """The ABORT that `side` ("sender" or "receiver") sends its peer when `error` stops
    it mid-transfer; None when there is nothing to tell (the peer went away or gave up
    itself, or the error is not ferry's: an interrupt or a bug just closes).

    One rule for both sides. The reason is a messages.REASON_* token: `changed` for
    a source file that changed under the sender, `no-space` for a full disk, and
    `local-error` for anything else. The text names the offered name only (for a
    changed file of a tree, its path in the tree) and the error's class sentence,
    never the error's own message: that can hold a local path (the sender's file,
    the receiver's DIR), and the peer has no business with it. `after` is said last.
    """
    if not isinstance(error, FerryError) or isinstance(error, ConnectionLost | RefusedByPeer):
        return None
    if isinstance(error, SourceChanged):
        reason, text = messages.REASON_CHANGED, f"{error.offered} changed while it was being sent"
    else:
        reason = (
            messages.REASON_NO_SPACE if isinstance(error, NoSpace) else messages.REASON_LOCAL_ERROR
        )
        what = repr(offered) if offered else "what was offered"
        verb = "store" if side == "receiver" else "send"
        sentence = " ".join((type(error).__doc__ or "it failed").split()).rstrip(".")
        text = f"could not {verb} {what}: {sentence}"
    return messages.Abort(reason, f"{text}; {after}" if after else text)


def stored_notice(offered: str, stored: str) -> str | None:
    """The line to show when the stored name needs the user's eye: it differs from
    the offered one, or it (the last component of a path in a tree) starts with a
    dot (hidden, and some dotfiles run code: .bash_login, .profile). None when
    there is nothing to say. A name that differs only in its Unicode form
    (macOS's decomposed "é") is the same name: shown once."""
    dotted = stored.rpartition("/")[2].startswith(".")
    same = same_name(stored, offered)
    if same and not dotted:
        return None
    hidden = " (a hidden dotfile)" if dotted else ""
    if same:
        return f'stored "{shown(stored)}"{hidden}'
    return f'stored "{shown(stored)}"{hidden}, offered as "{shown(offered)}"'


MAX_TREE_NOTICES = 10
"""Lines of stored_notice() shown for one tree at most; a last line counts the rest."""


def tree_notices(offered: list[str], stored: list[str]) -> list[str]:
    """stored_notice() for each entry of a tree whose own name needs the user's eye
    (offered and stored paths, "/"-separated, in manifest order), at most
    MAX_TREE_NOTICES lines and then one that says how many more there are.

    An entry inside a renamed directory is not named again for its parent's
    sake: only its own (last) component counts."""
    lines = []
    for offered_path, stored_path in zip(offered, stored, strict=True):
        own = offered_path.rpartition("/")[2]
        notice = stored_notice(own, stored_path.rpartition("/")[2])
        if notice is not None:
            lines.append(stored_notice(offered_path, stored_path) or notice)
    if len(lines) > MAX_TREE_NOTICES:
        more = len(lines) - MAX_TREE_NOTICES
        lines[MAX_TREE_NOTICES:] = [f"and {more} more stored under another name or hidden"]
    return lines
