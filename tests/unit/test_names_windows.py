"""names.safe_name's Windows rules, on every system: device names, forbidden characters,
trailing dots and spaces; a name Windows cannot create never comes out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.errors import UnsafeName
from ferry.names import is_windows_device, safe_name, same_name

DEVICES = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"] + [
    f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789¹²³"
]
FORBIDDEN = '<>:"|?*'
PROPERTY = settings(max_examples=200, deadline=None)  # the table above pins each device name


@pytest.mark.parametrize(
    ("offered", "stored"),
    [
        ("CON", "_CON"),
        ("con", "_con"),
        ("nul.txt", "_nul.txt"),
        ("NUL.tar.gz", "_NUL.tar.gz"),
        ("COM1", "_COM1"),
        ("com9.log", "_com9.log"),
        ("LPT9.log", "_LPT9.log"),
        ("lpt1", "_lpt1"),
        ("CONIN$", "_CONIN$"),
        ("conout$.txt", "_conout$.txt"),
        ("COM¹", "_COM¹"),
        ("LPT³.txt", "_LPT³.txt"),
        ("aux .txt", "_aux .txt"),  # Windows ignores the spaces before the dot too
        ("PRN.", "_PRN"),  # the trailing dot goes first, then the device name is seen
        ("a<b>c.txt", "a_b_c.txt"),
        ('say "hi".txt', "say _hi_.txt"),
        ("what?.txt", "what_.txt"),
        ("*.txt", "_.txt"),
        ("a|b", "a_b"),
        ("tabs\tand\x01controls\x1f.txt", "tabsandcontrols.txt"),
        ("trailing dot.", "trailing dot"),
        ("trailing space.txt  ", "trailing space.txt"),
        ("dots and spaces. . .", "dots and spaces"),
        # Near misses are ordinary names.
        ("CONSOLE", "CONSOLE"),
        ("COM10", "COM10"),
        ("LPT", "LPT"),
        ("nul_x.txt", "nul_x.txt"),
        ("my.con", "my.con"),
        ("_nul.txt", "_nul.txt"),
    ],
)
def test_safe_name_applies_the_windows_rules(offered: str, stored: str) -> None:
    assert safe_name(offered) == stored


def test_safe_name_refuses_a_name_of_forbidden_characters_only_after_edges() -> None:
    with pytest.raises(UnsafeName):
        safe_name(" . ")


device = st.sampled_from(DEVICES)
case = st.sampled_from([str.upper, str.lower, str.title])
extension = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)


@PROPERTY
@given(device, case, st.text(alphabet=" ", max_size=3), extension)
def test_any_device_name_with_any_extension_is_never_stored_as_such(
    name: str, change: object, spaces: str, ext: str
) -> None:
    assert callable(change)
    offered = f"{change(name)}{spaces}.{ext}" if ext else f"{change(name)}{spaces}"
    try:
        stored = safe_name(offered)
    except UnsafeName:
        return
    assert not is_windows_device(stored), (offered, stored)


windowsy = st.lists(
    st.sampled_from([*FORBIDDEN, ".", " ", "\t", "\x00", "\x7f", "a", "B", "é", "$", "1", "¹",
                     "CON", "nul", "COM", "lpt", "/", "\\"]),
    max_size=12,
).map("".join)  # fmt: skip


@PROPERTY
@given(st.one_of(windowsy, st.text(max_size=300)))
def test_any_stored_name_is_one_windows_can_create(offered: str) -> None:
    try:
        stored = safe_name(offered)
    except UnsafeName:
        return
    assert not set(FORBIDDEN) & set(stored), stored
    assert all(ord(char) >= 32 and char != "\x7f" for char in stored), stored
    assert not stored.endswith((".", " ")), stored
    assert not is_windows_device(stored), stored
    assert len(stored.encode("utf-8")) <= 255
    assert safe_name(stored) == stored  # idempotent: stored once, the same name again


@PROPERTY
@given(windowsy)
def test_a_name_windows_accepts_is_kept_as_it_is(offered: str) -> None:
    clean = not set(FORBIDDEN + "\t\x00\x7f/\\") & set(offered)
    edges = offered == offered.strip() and not offered.endswith(".")
    if not (clean and edges and offered.strip(".") and offered not in (".", "..")):
        return
    if is_windows_device(offered):
        assert safe_name(offered) == "_" + offered
    else:
        assert safe_name(offered) == offered


def test_same_name_sees_composed_and_decomposed_forms_as_one() -> None:
    assert same_name("re\u0301sume\u0301.pdf", "résumé.pdf")
    assert not same_name("resume.pdf", "résumé.pdf")
