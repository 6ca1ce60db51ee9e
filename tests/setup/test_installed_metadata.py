"""The .venv that scripts/bootstrap.py made carries a valid dist-info for ferry, at the
version `ferry --version` prints, and its .pth finds this checkout's src/ by a relative path."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import subprocess
import sys
import tomllib
from email.parser import Parser
from pathlib import Path

import pytest

import ferry
from ferry.cli.main import main
from tests.setup.checkout import ROOT

VENV = ROOT / ".venv"
pytestmark = pytest.mark.skipif(
    Path(sys.prefix).resolve() != VENV.resolve(), reason="not running in the .venv bootstrap made"
)


def test_importlib_metadata_knows_ferry_at_the_version_it_prints() -> None:
    assert importlib.metadata.version("ferry") == ferry.__version__
    printed = subprocess.run(
        [VENV / "bin" / "ferry", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert printed == f"ferry {importlib.metadata.version('ferry')}\n"


def test_the_dist_info_is_valid_and_its_record_is_true() -> None:
    dist = importlib.metadata.distribution("ferry")
    metadata = Parser().parsestr(dist.read_text("METADATA") or "")
    assert metadata["Metadata-Version"] == "2.1"
    assert metadata["Name"] == "ferry"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(declared["dependencies"]) <= set(metadata.get_all("Requires-Dist") or [])
    assert (dist.read_text("INSTALLER") or "").strip() == "ferry-bootstrap"
    (script,) = dist.entry_points.select(group="console_scripts", name="ferry")
    assert script.load() is main
    listed = dist.files or []
    assert {file.name for file in listed} >= {"METADATA", "RECORD", "ferry.pth", "ferry"}
    for file in listed:
        if file.hash is None:
            assert file.name == "RECORD"
            continue
        data = Path(str(dist.locate_file(file))).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert (file.hash.mode, file.hash.value, file.size) == ("sha256", digest, len(data))


def test_the_pth_is_relative_and_names_this_checkouts_src() -> None:
    (pth,) = Path(sys.prefix).glob("lib/python*/site-packages/ferry.pth")
    line = pth.read_text().strip()
    assert not Path(line).is_absolute()
    assert (pth.parent / line).resolve() == (ROOT / "src").resolve()
    assert Path(ferry.__file__).resolve().is_relative_to((ROOT / "src").resolve())


def test_the_version_has_one_source() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "src/ferry/__init__.py"
