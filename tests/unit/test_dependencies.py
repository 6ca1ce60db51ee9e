"""The dependency floors in pyproject.toml admit only versions with the APIs we call."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

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
Pins = dict[tuple[str, str], tuple[str, list[str]]]


def _locked(name: str) -> Pins:
    """{(name, marker): (version, [sha256, ...])} of a lock file ('' for no marker)."""
    text = (LOCKS / name).read_text().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        found = re.match(
            r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.*?))?\s*(?:--hash|$)", line
        )
        if found:
            pins[(found.group(1), found.group(3) or "")] = (
                found.group(2),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", line),
            )
    return pins


def _environment(sys_platform: str, machine: str, python: str) -> dict[str, str]:
    """A PEP 508 marker environment of CPython `python` on another machine."""
    os_name, system = {"linux": ("posix", "Linux"), "darwin": ("posix", "Darwin"),
                       "win32": ("nt", "Windows")}[sys_platform]  # fmt: skip
    return {
        "os_name": os_name, "sys_platform": sys_platform, "platform_system": system,
        "platform_machine": machine, "platform_python_implementation": "CPython",
        "implementation_name": "cpython", "python_version": python.rsplit(".", 1)[0],
        "python_full_version": python, "implementation_version": python,
        "platform_release": "", "platform_version": "",
    }  # fmt: skip


# Every supported platform and a CPython of each supported minor version.
ENVIRONMENTS = [
    _environment(sys_platform, machine, python)
    for sys_platform, machine in [
        ("linux", "x86_64"),
        ("linux", "aarch64"),
        ("darwin", "arm64"),
        ("darwin", "x86_64"),
        ("win32", "AMD64"),
        ("win32", "ARM64"),
    ]
    for python in ["3.11.0", "3.11.9", "3.12.8", "3.13.1", "3.14.0"]
]


def _for(pins: Pins, environment: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """The lock's pins that apply to one machine, by name (one each, or the lock is wrong)."""
    from packaging.markers import Marker

    chosen: dict[str, tuple[str, list[str]]] = {}
    for (name, marker), pin in pins.items():
        if not marker or Marker(marker).evaluate(environment):
            assert name not in chosen, f"two pins of {name} for {environment}"
            chosen[name] = pin
    return chosen


def test_the_locks_pin_every_declared_dependency_within_its_range_on_every_platform() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for lock, declared in [
        ("runtime.txt", project["dependencies"]),
        ("dev.txt", project["dependencies"] + project["optional-dependencies"]["dev"]),
    ]:
        locked = _locked(lock)
        assert locked and all(hashes for _, hashes in locked.values()), lock
        assert all(name == canonicalize_name(name) for name, _ in locked), lock
        for environment in ENVIRONMENTS:
            pins = _for(locked, environment)
            for spec in declared:
                requirement = Requirement(spec)
                if requirement.marker and not requirement.marker.evaluate(environment):
                    continue
                version, _ = pins[canonicalize_name(requirement.name)]
                assert requirement.specifier.contains(version), f"{lock}: {spec} but {version}"


def test_the_windows_lock_has_colorama_for_tqdm_and_linux_does_not() -> None:
    windows, linux = ENVIRONMENTS[-1], ENVIRONMENTS[0]
    assert "colorama" in _for(_locked("runtime.txt"), windows)
    assert "colorama" not in _for(_locked("runtime.txt"), linux)


def test_the_dev_lock_holds_the_runtime_locks_pins() -> None:
    runtime, dev = _locked("runtime.txt"), _locked("dev.txt")
    for environment in ENVIRONMENTS:
        on_dev = _for(dev, environment)
        assert {name: on_dev[name] for name in _for(runtime, environment)} == _for(
            runtime, environment
        )


def test_this_environment_was_installed_from_the_lock() -> None:
    import importlib.metadata

    from packaging.markers import default_environment

    here = {key: str(value) for key, value in default_environment().items()}
    for name, (version, _) in _for(_locked("dev.txt"), here).items():
        assert importlib.metadata.version(name) == version, name


def _bootstrap() -> ModuleType:
    path = PYPROJECT.parent / "scripts" / "bootstrap.py"
    spec = importlib.util.spec_from_file_location("ferry_bootstrap_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bootstrap_evaluates_every_marker_of_the_locks_as_pip_does() -> None:
    """bootstrap.py (standard library only) decides which lock lines are this machine's."""
    from packaging.markers import Marker

    bootstrap = _bootstrap()
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    markers = {marker for lock in ("runtime.txt", "dev.txt") for _, marker in _locked(lock)}
    markers |= {spec.split(";", 1)[1] for spec in project["dependencies"] if ";" in spec}
    markers |= {"python_version >= '3.12' and (os_name == \"nt\" or 'arm' in platform_machine)"}
    markers.discard("")
    assert len(markers) >= 5
    for environment in ENVIRONMENTS:
        for marker in markers:
            expected = Marker(marker).evaluate(environment)
            assert bootstrap.marker_holds(marker, environment) == expected, (marker, environment)


def test_the_bootstrap_reads_this_machines_pins_only() -> None:
    bootstrap = _bootstrap()
    pins = bootstrap.read_pins(LOCKS / "runtime.txt")
    assert "colorama" not in pins  # sys_platform == 'win32'
    assert pins["cryptography"] == _for(_locked("runtime.txt"), ENVIRONMENTS[0])["cryptography"][0]
