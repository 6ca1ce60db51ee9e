"""Unit tests for ferry.codes: the word list, code generation and parsing."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import combinations, pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferry.codes
from ferry.codes import (
    DEFAULT_WORD_COUNT,
    MAX_NAMEPLATE,
    MAX_WORD_COUNT,
    MIN_WORD_COUNT,
    Code,
    generate_code,
    parse_code,
    words,
)
from ferry.errors import InvalidCode, UsageError

nameplates = st.integers(min_value=1, max_value=MAX_NAMEPLATE)
word_counts = st.integers(min_value=MIN_WORD_COUNT, max_value=MAX_WORD_COUNT)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def first_words(count: int) -> Sequence[str]:
    return words()[:count]


# --- word list -------------------------------------------------------------------------------


def test_levenshtein_helper_known_pairs_gives_textbook_distances() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("cat", "cart") == 1
    assert levenshtein("pair", "pear") == 2
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_wordlist_loaded_has_512_unique_entries() -> None:
    assert len(words()) == 512
    assert len(set(words())) == 512


def test_wordlist_every_word_is_3_to_7_lowercase_ascii_letters() -> None:
    bad = [w for w in words() if not re.fullmatch(r"[a-z]{3,7}", w)]
    assert bad == []


def test_wordlist_no_word_is_a_prefix_of_another() -> None:
    ordered = sorted(words())
    # In sorted order a word that is a prefix of others is immediately followed by one of them.
    bad = [(a, b) for a, b in pairwise(ordered) if b.startswith(a)]
    assert bad == []


def test_wordlist_any_two_words_differ_by_at_least_two_edits() -> None:
    close = [(a, b) for a, b in combinations(words(), 2) if levenshtein(a, b) < 2]
    assert close == []


# Sound-alike pairs that edit distance does not catch; at most one of each may be listed.
HOMOPHONES = """
    pair/pear sail/sale flower/flour bear/bare hair/hare deer/dear sun/son rose/rows
    plane/plain piece/peace tail/tale whale/wail knight/night thyme/time wood/would
    beach/beech berry/bury kernel/colonel cymbal/symbol pier/peer creek/creak
    gorilla/guerrilla medal/metal hangar/hanger prince/prints chili/chilly plum/plumb
    moose/mousse mist/missed lynx/links key/quay sweet/suite bell/belle
"""


def test_wordlist_known_homophone_pairs_at_most_one_listed() -> None:
    listed = set(words())
    both = [pair for pair in HOMOPHONES.split() if set(pair.split("/")) <= listed]
    assert both == []


def test_wordlist_file_is_one_word_per_line_without_blank_lines() -> None:
    raw = Path(ferry.codes.__file__).with_name("wordlist.txt").read_text(encoding="ascii")
    assert raw.splitlines() == list(words())


def test_words_called_twice_returns_the_same_cached_tuple() -> None:
    assert words() is words()


# --- generation ------------------------------------------------------------------------------


def test_generate_code_deterministic_choice_gives_expected_text() -> None:
    picks = iter(["guitar", "orbit", "velvet"])
    code = generate_code(7, choice=lambda _seq: next(picks))
    assert code.text == "7-guitar-orbit-velvet"
    assert str(code) == "7-guitar-orbit-velvet"
    assert code.password == b"7-guitar-orbit-velvet"
    assert code == Code(7, ("guitar", "orbit", "velvet"))


def test_generate_code_choice_receives_the_whole_wordlist() -> None:
    seen: list[Sequence[str]] = []

    def choice(seq: Sequence[str]) -> str:
        seen.append(seq)
        return seq[0]

    code = generate_code(1, word_count=4, choice=choice)
    assert len(code.words) == 4
    assert all(tuple(seq) == words() for seq in seen)


def test_generate_code_default_uses_default_word_count_from_the_list() -> None:
    code = generate_code(42)
    assert len(code.words) == DEFAULT_WORD_COUNT
    assert set(code.words) <= set(words())


@pytest.mark.parametrize("nameplate", [0, -1, MAX_NAMEPLATE + 1])
def test_generate_code_nameplate_out_of_range_raises_value_error(nameplate: int) -> None:
    with pytest.raises(ValueError, match="nameplate"):
        generate_code(nameplate)


@pytest.mark.parametrize("count", [MIN_WORD_COUNT - 1, MAX_WORD_COUNT + 1, 0])
def test_generate_code_word_count_out_of_range_raises_value_error(count: int) -> None:
    with pytest.raises(ValueError, match="word_count"):
        generate_code(1, word_count=count)


def drawn_choice(data: st.DataObject) -> Callable[[Sequence[str]], str]:
    """A ``choice`` for generate_code that lets hypothesis pick (and shrink) the words."""
    return lambda seq: data.draw(st.sampled_from(seq))


@given(nameplate=nameplates, count=word_counts, data=st.data())
def test_generate_then_parse_any_nameplate_and_count_round_trips(
    nameplate: int, count: int, data: st.DataObject
) -> None:
    code = generate_code(nameplate, word_count=count, choice=drawn_choice(data))
    assert parse_code(code.text) == code
    assert parse_code(code.text).text == code.text
    assert parse_code(code.text).nameplate == nameplate


# --- secrecy ---------------------------------------------------------------------------------


@given(nameplate=nameplates, count=word_counts, data=st.data())
def test_code_repr_any_code_hides_every_word(
    nameplate: int, count: int, data: st.DataObject
) -> None:
    code = generate_code(nameplate, word_count=count, choice=drawn_choice(data))
    shown = repr(code)
    assert shown == f"Code(nameplate={nameplate}, words=<{count} hidden>)"
    # The exact form above already proves no word is shown; "plate" is a word
    # and also part of "nameplate", so a substring check would be meaningless.


def test_code_repr_inside_container_still_hides_words() -> None:
    code = Code(7, ("guitar", "orbit", "velvet"))
    shown = repr([code])
    assert "guitar" not in shown and "orbit" not in shown and "velvet" not in shown


# --- forgiving parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "7-guitar-orbit-velvet",
        "7-GUITAR-Orbit-VeLvEt",
        "  7-guitar-orbit-velvet\n",
        "\t7-guitar-orbit-velvet \r\n",
        "7 guitar orbit velvet",
        "7 - guitar - orbit - velvet",
        "7--guitar---orbit-velvet",
        "7   guitar  orbit velvet",
        "7-guitar-orbit-velvet-",
        "007-guitar-orbit-velvet",
        "0000007 GUITAR ORBIT VELVET",
    ],
)
def test_parse_code_variant_spelling_gives_canonical_code(typed: str) -> None:
    code = parse_code(typed)
    assert code == Code(7, ("guitar", "orbit", "velvet"))
    assert code.text == "7-guitar-orbit-velvet"


def test_parse_code_leading_zeros_are_normalised_away() -> None:
    assert parse_code("007-guitar-orbit-velvet").nameplate == 7
    assert parse_code("007-guitar-orbit-velvet").text == "7-guitar-orbit-velvet"


def test_parse_code_limits_inclusive_are_accepted() -> None:
    few = first_words(MIN_WORD_COUNT)
    many = first_words(MAX_WORD_COUNT)
    assert parse_code("-".join(("1", *few))).nameplate == 1
    assert parse_code("-".join((str(MAX_NAMEPLATE), *many))).words == tuple(many)


@given(nameplate=nameplates, count=word_counts, data=st.data())
def test_parse_code_random_case_and_separators_gives_same_code(
    nameplate: int, count: int, data: st.DataObject
) -> None:
    code = generate_code(nameplate, word_count=count, choice=drawn_choice(data))
    separators = st.text(alphabet=" -", min_size=1, max_size=3)
    pieces = [str(nameplate).zfill(data.draw(st.integers(0, 8)))]
    for word in code.words:
        pieces.append(data.draw(separators))
        pieces.append("".join(c.upper() if data.draw(st.booleans()) else c for c in word))
    typed = data.draw(st.sampled_from(["", " ", "\n"])) + "".join(pieces) + " "
    assert parse_code(typed) == code


# --- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("guitar-orbit-velvet", "must start with a number"),
        ("-7-guitar-orbit", "must start with a number"),
        ("seven-guitar-orbit", "must start with a number"),
        ("---", "must start with a number"),
        ("- - -", "must start with a number"),
        ("0-guitar-orbit-velvet", "between 1 and 999999"),
        ("000-guitar-orbit-velvet", "between 1 and 999999"),
        ("1000000-guitar-orbit-velvet", "between 1 and 999999"),
        ("9" * 5000 + "-guitar-orbit", "between 1 and 999999"),
        ("7-gitar-orbit-velvet", "'gitar' is not a ferry word (check the spelling)"),
        ("7-guitar-orbit-velvets", "'velvets' is not a ferry word"),
        ("7_guitar_orbit", "must start with a number"),
        ("7", "at least 3 words"),
        ("7-guitar", "at least 3 words"),
        ("7-guitar-", "at least 3 words"),
        ("7-guitar-orbit", "at least 3 words"),
        ("7-" + "-".join(first_words(MAX_WORD_COUNT + 1)), "at most 8 words"),
        ("7-guitär-orbit-velvet", "not plain ASCII"),
        ("７-guitar-orbit", "not plain ASCII"),
        ("7-guitar\x00-orbit", "control character"),
        ("7-guitar\torbit-velvet", "control character"),
        ("7-guitar\x1b[31m-orbit", "control character"),
        ("7.5-guitar-orbit", "must start with a number"),
        ("+7-guitar-orbit", "must start with a number"),
    ],
)
def test_parse_code_malformed_raises_invalid_code_with_reason(typed: str, fragment: str) -> None:
    with pytest.raises(InvalidCode) as caught:
        parse_code(typed)
    message = caught.value.message
    assert message.startswith("invalid code: ")
    assert fragment in message
    assert "\n" not in message


def test_parse_code_error_does_not_echo_the_whole_code() -> None:
    with pytest.raises(InvalidCode) as caught:
        parse_code("7-guitar-orbit-velvte")
    assert "guitar" not in caught.value.message
    assert "orbit" not in caught.value.message


def test_parse_code_very_long_unknown_word_is_cut_short_in_message() -> None:
    with pytest.raises(InvalidCode) as caught:
        parse_code("7-guitar-" + "x" * 500)
    assert len(caught.value.message) < 100


def test_invalid_code_is_a_usage_error_for_the_cli() -> None:
    with pytest.raises(UsageError):
        parse_code("nope")


@given(st.text())
def test_parse_code_arbitrary_text_returns_code_or_raises_invalid_code(typed: str) -> None:
    try:
        code = parse_code(typed)
    except InvalidCode as exc:
        assert "\n" not in exc.message
    else:
        assert parse_code(code.text) == code


code_like = st.lists(
    st.one_of(
        st.sampled_from(words()[:20]),
        st.sampled_from(["", "-", " ", "--", "0", "7", "00", "999999", "1000000", "\x00", "é"]),
        st.text(alphabet="0123456789- abcz", max_size=8),
    ),
    max_size=12,
).map("-".join)


@given(code_like)
def test_parse_code_near_valid_text_returns_code_or_raises_invalid_code(typed: str) -> None:
    try:
        code = parse_code(typed)
    except InvalidCode:
        return
    assert 1 <= code.nameplate <= MAX_NAMEPLATE
    assert MIN_WORD_COUNT <= len(code.words) <= MAX_WORD_COUNT
    assert set(code.words) <= set(words())


def test_parse_code_with_two_words_is_refused_locally_as_a_typo() -> None:
    two = "-".join(words()[:2])
    with pytest.raises(InvalidCode) as caught:
        parse_code(f"1-{two}")
    assert "at least 3 words" in caught.value.message
