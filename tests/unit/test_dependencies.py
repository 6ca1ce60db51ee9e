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


LOCKS = PYPROJECT.parent / "requirements"


def _locked(name: str) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [sha256, ...])} of a lock file."""
    text = (LOCKS / name).read_text().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        found = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if found:
            pins[found.group(1)] = (
                found.group(2),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", line),
            )
    return pins


def test_the_locks_pin_every_declared_dependency_within_its_range_with_hashes() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for lock, declared in [
        ("runtime.txt", project["dependencies"]),
        ("dev.txt", project["dependencies"] + project["optional-dependencies"]["dev"]),
    ]:
        pins = _locked(lock)
        assert pins and all(hashes for _, hashes in pins.values()), lock
        assert all(name == canonicalize_name(name) for name in pins), lock
        for spec in declared:
            requirement = Requirement(spec)
            version, _ = pins[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(version), f"{lock}: {spec} but {version}"


def test_the_dev_lock_holds_the_runtime_locks_pins() -> None:
    runtime, dev = _locked("runtime.txt"), _locked("dev.txt")
    assert {name: dev[name] for name in runtime} == runtime


def test_this_environment_was_installed_from_the_lock() -> None:
    import importlib.metadata

    for name, (version, _) in _locked("dev.txt").items():
        assert importlib.metadata.version(name) == version, name


def test_lock_counts_stable_abi_wheels_of_older_cpython_as_usable() -> None:
    """cp39-abi3 wheels install on CPython 3.11: their hashes must be in the lock.

    Missing, pip picked such a wheel on a fresh machine and refused it for its hash.
    """
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "lock.py"
    spec = importlib.util.spec_from_file_location("ferry_lock_script", path)
    assert spec is not None and spec.loader is not None
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    wheel = "ast_serialize-0.13.1-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert lock.usable(wheel)
    assert lock.usable("cryptography-47.0.0-cp311-abi3-manylinux_2_28_x86_64.whl")
    assert not lock.usable("foo-1.0-cp310-cp310-manylinux_2_17_x86_64.whl")
    assert not lock.usable("foo-1.0-cp39-abi3-macosx_11_0_arm64.whl")
