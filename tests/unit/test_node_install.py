"""web/node_modules is installed once, then left alone while node runs from it.

`npm ci` deletes web/node_modules first, so a reinstall during another test's node
run breaks that run; ferry_testing.node reinstalls only when the installed packages
differ from the lock. The lock names optional packages for other platforms that npm
leaves out here, and those must not count as a difference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferry_testing import node


def test_after_an_install_the_installed_packages_match_the_lock() -> None:
    node.require_node()
    assert node._installed_matches_lock()


def _fake_web(tmp_path: Path, lock: dict[str, object], installed: dict[str, object]) -> Path:
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "package-lock.json").write_text(json.dumps({"packages": lock}))
    hidden = tmp_path / "node_modules" / ".package-lock.json"
    hidden.write_text(json.dumps({"packages": installed}))
    return tmp_path


@pytest.mark.parametrize(
    ("installed", "matches"),
    [
        ({"node_modules/a": {"version": "1.0.0"}}, True),
        ({}, False),
        ({"node_modules/a": {"version": "1.0.1"}}, False),
        ({"node_modules/a": {"version": "1.0.0"}, "node_modules/x": {"version": "9"}}, False),
        (
            {"node_modules/a": {"version": "1.0.0"}, "node_modules/opt": {"version": "2.0.0"}},
            True,
        ),
        (
            {"node_modules/a": {"version": "1.0.0"}, "node_modules/opt": {"version": "2.0.1"}},
            False,
        ),
    ],
)
def test_optional_packages_for_other_platforms_may_be_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: dict[str, object], matches: bool
) -> None:
    lock = {
        "": {"name": "web"},
        "node_modules/a": {"version": "1.0.0"},
        "node_modules/opt": {"version": "2.0.0", "optional": True},
    }
    monkeypatch.setattr(node, "WEB", _fake_web(tmp_path, lock, installed))
    assert node._installed_matches_lock() is matches
