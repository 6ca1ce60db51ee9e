"""Turn a file name offered by the sender into a safe base name for the receiver.

Theory of operation: the name arrives from a peer we must assume is hostile, so it is
treated as untrusted text, never as a path. `safe_name` reduces it to one base name that
can only ever be created *inside* the receiver's output directory, and that cannot
deceive the person reading it on a terminal. It applies, in order:

1. Drop invisible and unrepresentable characters: lone surrogates (Cs, left by bad
   decoding; they cannot be encoded as UTF-8), control characters (Cc, including NUL,
   newlines and the ESC that starts terminal escape sequences), format characters (Cf:
   zero-width characters, the BOM, and bidi overrides such as U+202E, which makes
   "evil" U+202E "txt.exe" display as "evilexe.txt") and line/paragraph separators
   (Zl, Zp). They go first so that they cannot hide a separator or a dot from later rules.
2. Unicode NFC-normalise, so one visible name has one spelling (macOS and Linux would
   otherwise disagree about whether "é" is one or two code points).
3. Treat both "/" and "\\" as separators and keep only the last non-empty component:
   directories are never created and ".." can never climb out ("../../etc/passwd" gives
   "passwd", "C:\\Users\\x\\a.txt" gives "a.txt").
4. Strip a Windows drive prefix ("C:") and replace every remaining character Windows
   forbids in a name, `: < > " | ? *`, with "_" (a colon names a drive or an NTFS
   alternate data stream; the others are wildcards and redirections there).
5. Strip leading white space, and trailing white space and dots (Windows silently drops
   trailing dots and spaces, so "a.txt." and "a.txt" would be the same file there).
6. Refuse (`UnsafeName`) what is left if it is empty, "." or ".." (a name made only of
   dots ends up empty after step 5). A leading dot is allowed: dotfiles are ordinary files.
7. If the UTF-8 encoding exceeds `MAX_NAME_BYTES`, shorten it on a character boundary,
   keeping the extension (the text after the last dot, if at most 16 characters) so the
   file still opens with the right program.
8. A Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, COM and LPT with a
   superscript 1-3, CONIN$, CONOUT$), alone or before any extension ("nul.txt",
   "LPT9.log", "con .tar.gz"), in any case, gets a "_" in front: on Windows it would
   open the device, not a file.

The Windows rules (4, 5, 8) apply on every system, not only on Windows: one offer gets
the same name wherever it lands, and a file received on Linux or macOS can still be
copied to a Windows disk or a FAT/exFAT USB stick. Control characters are gone by step 1.

Every step keeps the result NFC and free of what earlier steps removed, so `safe_name` is
idempotent: `safe_name(safe_name(x)) == safe_name(x)`. `display_name` is the separate,
lossy rendering used only for messages: it replaces anything a terminal might interpret
with "?". Everything here is a pure function without I/O.
"""

from __future__ import annotations

import re
import unicodedata

from ferry.errors import UnsafeName

__all__ = ["MAX_NAME_BYTES", "display_name", "is_windows_device", "safe_name", "same_name"]

# The common per-component limit (ext4, XFS, btrfs, APFS, NTFS in practice), in UTF-8 bytes.
MAX_NAME_BYTES = 255

# An extension longer than this is not worth keeping when a name must be shortened.
_MAX_KEPT_EXTENSION_CHARS = 16

# Categories never allowed in a stored name: surrogate, control, format, line/paragraph sep.
_INVISIBLE_CATEGORIES = frozenset({"Cs", "Cc", "Cf", "Zl", "Zp"})

_SEPARATORS = re.compile(r"[/\\]")
_DRIVE_PREFIX = re.compile(r"[A-Za-z]:")
_WINDOWS_FORBIDDEN = re.compile(r'[:<>"|?*]')
# Names Windows reserves for devices, with or without an extension (compared upper-case).
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"]
)

# How much of an unusable name to echo back in the error message.
_PREVIEW_CHARS = 60


def _is_invisible(char: str) -> bool:
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES


def _strip_edges(name: str) -> str:
    """Strip leading white space, and trailing white space and dots, until stable."""
    name = name.lstrip()
    end = len(name)
    while end > 0 and (name[end - 1].isspace() or name[end - 1] == "."):
        end -= 1
    return name[:end]


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `max_bytes`."""
    # Decoding with "ignore" drops only a multi-byte character cut in half at the end.
    return text.encode("utf-8")[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def _shorten(name: str) -> str:
    """Fit `name` (already clean, no surrogates) into MAX_NAME_BYTES, keeping its extension."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    dot = name.rfind(".")
    extension = name[dot:] if dot > 0 else ""  # a leading dot marks a dotfile, not an extension
    if not 1 < len(extension) <= _MAX_KEPT_EXTENSION_CHARS + 1:
        extension = ""
    budget = MAX_NAME_BYTES - len(extension.encode("utf-8"))
    stem = _truncate_utf8(name[: len(name) - len(extension)], budget)
    # Only the end of the whole name matters: with an extension kept it ends as before.
    return stem + extension if extension else _strip_edges(stem)


def _refuse(offered: str) -> UnsafeName:
    preview = offered[:_PREVIEW_CHARS] + ("..." if len(offered) > _PREVIEW_CHARS else "")
    return UnsafeName(f'the sender offered an unusable file name: "{display_name(preview)}"')


def safe_name(offered: str) -> str:
    """Reduce a sender-chosen file name to a safe base name, or raise `UnsafeName`.

    The result is non-empty, is neither "." nor "..", contains no "/", "\\", NUL, control,
    format or surrogate characters, is NFC-normalised and is at most MAX_NAME_BYTES bytes
    in UTF-8. See the module docstring for the rules and why.
    """
    if offered.isascii() and offered.isprintable():
        normalised = offered  # nothing invisible, already NFC: skip the per-character work
    else:
        visible = "".join(char for char in offered if not _is_invisible(char))
        normalised = unicodedata.normalize("NFC", visible)
    components = [part for part in _SEPARATORS.split(normalised) if part]
    if not components:
        raise _refuse(offered)
    name = components[-1]
    if _DRIVE_PREFIX.match(name):
        name = name[2:]
    name = _strip_edges(_WINDOWS_FORBIDDEN.sub("_", name))
    if name in ("", ".", ".."):
        raise _refuse(offered)
    name = _shorten(name)
    if not name.strip("."):
        raise _refuse(offered)
    if is_windows_device(name):
        name = _shorten("_" + name)
    return name


def is_windows_device(name: str) -> bool:
    """Whether Windows opens a device for this name ("NUL", "nul.txt", "Com1 .log")."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _WINDOWS_DEVICES


def same_name(a: str, b: str) -> bool:
    """Whether two names look the same: equal once NFC-normalised (macOS may hand over
    "é" decomposed, as "e" and a combining accent, where Linux keeps it composed)."""
    return unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)


def display_name(name: str) -> str:
    """`name` made safe to print on a terminal: control and format characters become "?".

    Lone surrogates and line/paragraph separators are replaced too, so the result can
    always be encoded and always stays on one line. Meant for messages, not for storage.
    """
    return "".join("?" if _is_invisible(char) else char for char in name)
