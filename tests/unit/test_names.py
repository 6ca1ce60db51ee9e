"""Unit tests for ferry.names: hostile file names offered by a sender."""

from __future__ import annotations

import ntpath
import os.path
import posixpath
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.errors import FerryError, UnsafeName
from ferry.names import MAX_NAME_BYTES, display_name, is_windows_device, safe_name

# Twice Hypothesis' default: the table above pins the known hostile shapes, and these
# properties range over their combinations (600 each took ~20 s of the unit tier).
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

REFUSED = UnsafeName  # marker in the table below: safe_name must raise

HOSTILE_NAMES: list[tuple[str, str | type[UnsafeName]]] = [
    # Absolute paths and traversal.
    ("/etc/passwd", "passwd"),
    ("../../etc/passwd", "passwd"),
    ("../x", "x"),
    ("a/../../b", "b"),
    ("a/..", REFUSED),
    ("..", REFUSED),
    (".", REFUSED),
    ("/", REFUSED),
    ("///", REFUSED),
    ("dir/", "dir"),
    ("./.bashrc", ".bashrc"),
    # Backslashes, UNC paths, drive letters, NTFS streams.
    ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
    ("C:\\Users\\x\\a.txt", "a.txt"),
    ("\\\\server\\share\\f.txt", "f.txt"),
    ("\\\\?\\C:\\x.txt", "x.txt"),
    ("mixed/sep\\arators.txt", "arators.txt"),
    ("C:", REFUSED),
    ("C:\\", REFUSED),
    ("C:evil.txt", "evil.txt"),
    ("report.txt:secret", "report.txt_secret"),
    ("a:b:c", "b_c"),  # "a:" is read as a drive prefix
    ("notes: draft 2.txt", "notes_ draft 2.txt"),
    # Control characters, NUL, terminal escapes.
    ("a\x00b.txt", "ab.txt"),
    ("\x00", REFUSED),
    ("line1\nline2.txt", "line1line2.txt"),
    ("tab\t.txt", "tab.txt"),
    ("\x1b[31mred", "[31mred"),
    ("\x7fdel\x9b.txt", "del.txt"),
    ("a\u2028b.txt", "ab.txt"),
    # Format characters: bidi override, zero width, BOM.
    ("evil\u202etxt.exe", "eviltxt.exe"),
    ("zero\u200bwidth\u200d.txt", "zerowidth.txt"),
    ("\ufeffbom.txt", "bom.txt"),
    ("\u200b", REFUSED),
    # Lone surrogates from bad decoding.
    ("\ud800x.txt", "x.txt"),
    ("caf\udce9.txt", "caf.txt"),
    # Only dots, only spaces, empty, trailing dots and spaces.
    ("", REFUSED),
    ("...", REFUSED),
    ("   ", REFUSED),
    (" . . ", REFUSED),
    ("name.txt.", "name.txt"),
    ("name.txt. . ", "name.txt"),
    ("  padded.txt  ", "padded.txt"),
    ("\u3000ideographic\u3000.", "ideographic"),
    # Too long: shortened on a character boundary, extension kept when short.
    ("a" * 300 + ".txt", "a" * 251 + ".txt"),
    ("x" * 300, "x" * 255),
    ("é" * 200 + ".txt", "é" * 125 + ".txt"),
    ("🚀" * 100, "🚀" * 63),
    ("日" * 100 + ".tar.gz", "日" * 84 + ".gz"),
    ("a" * 300 + "." + "b" * 20, "a" * 255),
    ("." + "a" * 300, "." + "a" * 254),
    ("a" * 254 + " " * 10 + "b", "a" * 254),
    # Ordinary names are kept as they are (NFC-normalised).
    ("my file.txt", "my file.txt"),
    ("résumé.pdf", "résumé.pdf"),
    ("re\u0301sume\u0301.pdf", "résumé.pdf"),
    ("日本語.txt", "日本語.txt"),
    ("🚀 launch.txt", "🚀 launch.txt"),
    (".bashrc", ".bashrc"),
    ("..hidden", "..hidden"),
    ("console.txt", "console.txt"),
    ("COM10", "COM10"),
    ("archive.tar.gz", "archive.tar.gz"),
]


def assert_safe(result: str) -> None:
    """Every invariant safe_name promises about a name it returns."""
    assert result
    assert result not in (".", "..")
    assert result.strip(".")
    assert "/" not in result
    assert "\\" not in result
    assert "\x00" not in result
    assert not set('<>:"|?*') & set(result), "a character Windows forbids"
    assert not is_windows_device(result)
    for char in result:
        assert unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp"), repr(char)
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES
    assert result == result.strip()
    assert not result.endswith(".")
    assert unicodedata.is_normalized("NFC", result)
    assert os.path.basename(result) == result
    assert posixpath.basename(result) == result
    assert ntpath.basename(result) == result


@pytest.mark.parametrize(("offered", "expected"), HOSTILE_NAMES)
def test_safe_name_hostile_name_gives_expected_name_or_refusal(
    offered: str, expected: str | type[UnsafeName]
) -> None:
    if isinstance(expected, str):
        result = safe_name(offered)
        assert result == expected
        assert_safe(result)
    else:
        with pytest.raises(UnsafeName):
            safe_name(offered)


def test_hostile_names_table_has_at_least_30_cases() -> None:
    assert len(HOSTILE_NAMES) >= 30


def test_safe_name_refusal_is_ferry_error_with_one_printable_line() -> None:
    with pytest.raises(UnsafeName) as caught:
        safe_name("\n\x1b]0;pwned\x07\u202e/..")
    error = caught.value
    assert isinstance(error, FerryError)
    assert error.message.startswith("the sender offered an unusable file name")
    assert error.message.isprintable()


def test_safe_name_refusal_of_huge_name_gives_short_message() -> None:
    with pytest.raises(UnsafeName) as caught:
        safe_name("." * 100_000)
    assert len(caught.value.message) < 200


def test_safe_name_name_of_exactly_max_bytes_is_kept() -> None:
    name = "é" * 125 + ".txt" + "a"  # 250 + 5 = 255 bytes
    assert len(name.encode("utf-8")) == MAX_NAME_BYTES
    assert safe_name(name) == name


def test_safe_name_long_multibyte_name_never_splits_a_character() -> None:
    name = "a" + "€" * 200  # odd offset: a 3-byte character straddles byte 255
    result = safe_name(name)
    assert result == "a" + "€" * 84
    assert len(result.encode("utf-8")) == 253


def test_max_name_bytes_is_common_filesystem_limit() -> None:
    assert MAX_NAME_BYTES == 255


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain.txt", "plain.txt"),
        ("résumé 日本語.txt", "résumé 日本語.txt"),
        ("evil\u202etxt.exe", "evil?txt.exe"),
        ("\x1b[31mred", "?[31mred"),
        ("a\nb\rc\x00", "a?b?c?"),
        ("zero\u200bwidth", "zero?width"),
        ("bad\udce9", "bad?"),
        ("a\u2029b", "a?b"),
    ],
)
def test_display_name_control_and_format_chars_become_question_marks(name: str, shown: str) -> None:
    assert display_name(name) == shown


# --- properties -------------------------------------------------------------------------

# Any code point at all, lone surrogates included.
ANY_CHAR = st.characters(exclude_categories=())

# Fragments that exercise the interesting rules far more often than random text does.
HOSTILE_PIECES = st.sampled_from(
    [
        "/", "\\", ".", "..", " ", ":", "C:", "c:", "\x00", "\n", "\x1b", "\x85",
        "\u202e", "\u200b", "\u200d", "\ufeff", "\u2028", "\u3000", "\ud800", "\udcff",
        "e\u0301", "\u0301", "\u1100\u1161", "\u11a8", "é", "日", "🚀", "a", "txt",
    ]
)  # fmt: skip

HOSTILE_FRAGMENT = st.one_of(HOSTILE_PIECES, st.text(ANY_CHAR, max_size=4))
HOSTILE_TEXT = st.lists(HOSTILE_FRAGMENT, max_size=40).map("".join)

LONG_TEXT = st.builds(
    lambda stem, sep, ext: "".join(stem) + sep + "".join(ext),
    st.lists(st.one_of(HOSTILE_PIECES, ANY_CHAR), min_size=50, max_size=320),
    st.sampled_from(["", ".", ". ", "./", ":"]),
    st.lists(st.one_of(HOSTILE_PIECES, ANY_CHAR), max_size=20),
)

ANY_NAME = st.one_of(st.text(ANY_CHAR), HOSTILE_TEXT, LONG_TEXT)


@PROPERTY_SETTINGS
@given(ANY_NAME)
def test_safe_name_any_string_refuses_or_gives_safe_base_name(offered: str) -> None:
    try:
        result = safe_name(offered)
    except UnsafeName as error:
        assert "\n" not in error.message
        return
    assert_safe(result)


@PROPERTY_SETTINGS
@given(ANY_NAME)
def test_safe_name_applied_twice_gives_same_name(offered: str) -> None:
    try:
        once = safe_name(offered)
    except UnsafeName:
        return
    assert safe_name(once) == once


@PROPERTY_SETTINGS
@given(ANY_NAME)
def test_display_name_any_string_gives_printable_single_line(name: str) -> None:
    shown = display_name(name)
    assert len(shown) == len(name)
    assert "\n" not in shown
    shown.encode("utf-8")  # no lone surrogates left
    for char in shown:
        assert unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
