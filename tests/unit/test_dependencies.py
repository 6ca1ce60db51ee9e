"""The dependency floors in pyproject.toml admit only versions with the APIs we call."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# API the client relies on -> first release of its package that has it.
FIRST_RELEASE_WITH = {
    ("cryptography", "AESGCM.encrypt_into / decrypt_into"): (47, 0, 0),
}


def _floor(package: str) -> tuple[int, ...]:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for spec in dependencies:
        if re.match(rf"{package}\b", spec):
            found = re.search(r">=\s*([0-9.]+)", spec)
            assert found, f"{spec}: no lower bound"
            parts = [int(part) for part in found.group(1).split(".")]
            return tuple(parts + [0] * (3 - len(parts)))
    raise AssertionError(f"{package} is not a dependency")


def test_dependency_floors_admit_only_versions_with_the_apis_used() -> None:
    for (package, api), first in FIRST_RELEASE_WITH.items():
        assert _floor(package) >= first, f"{package} below {first} lacks {api}"


def test_the_installed_cryptography_has_the_aead_into_api() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert hasattr(AESGCM, "encrypt_into") and hasattr(AESGCM, "decrypt_into")
