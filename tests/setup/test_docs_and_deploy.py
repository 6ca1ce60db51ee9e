"""Documents point at files that exist, and the systemd unit's documented install steps
install what the unit refers to (its Documentation= page and its PYTHONPATH)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from tests.setup.checkout import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
UNIT = ROOT / "deploy" / "ferry-relay.service"
# Named in the docs as files the tools write, not files of the repository.
GENERATED = {"wan-latest.md"}


def test_every_link_and_markdown_file_named_in_the_docs_exists() -> None:
    for document in [*DOCUMENTS, *sorted((ROOT / "deploy").iterdir())]:
        text = document.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+:", target):
                assert (document.parent / target).exists(), f"{document.name}: link to {target}"
        for named in re.findall(r"[\w/.-]*\b[A-Za-z][\w-]*\.md\b", text):
            name = named.rsplit("/", 1)[-1]
            if name in GENERATED or named.startswith("///"):
                continue
            assert (
                (ROOT / named).exists() or (ROOT / "docs" / name).exists() or (ROOT / name).exists()
            ), f"{document.name} names {named}, which is not in the repository"


def install_steps_in_the_unit() -> list[str]:
    lines = [line.removeprefix("#").strip() for line in UNIT.read_text().splitlines()]
    return [line.split("   #")[0].strip() for line in lines if line.startswith("sudo ")]


def install_steps_in_operations() -> list[str]:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    block = re.search(r"\*\*systemd\*\*.*?```\n(.*?)```", text, re.DOTALL)
    assert block, "OPERATIONS.md has no systemd install block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_operations_documents_the_units_install_steps() -> None:
    assert install_steps_in_operations() == install_steps_in_the_unit()


def test_the_install_steps_put_the_units_documentation_and_code_in_place(tmp_path: Path) -> None:
    def host(path: str) -> Path:
        return tmp_path / path.lstrip("/")

    for line in install_steps_in_the_unit():  # run the cp steps against a fake root
        for command in line.split("&&"):
            argv = shlex.split(command)[1:]  # without sudo
            if argv[0] == "mkdir":
                host(argv[-1]).mkdir(parents=True, exist_ok=True)
            elif argv[0] == "cp":
                *sources, destination = [arg for arg in argv[1:] if not arg.startswith("-")]
                for source in sources:
                    target = host(destination)
                    target.mkdir(parents=True, exist_ok=True)
                    if (ROOT / source).is_dir():
                        shutil.copytree(ROOT / source, target / Path(source).name)
                    else:
                        shutil.copy(ROOT / source, target)
    unit = (host("/etc/systemd/system") / UNIT.name).read_text()
    (documentation,) = re.findall(r"(?m)^Documentation=file://(\S+)$", unit)
    assert host(documentation).is_file()
    (pythonpath,) = re.findall(r"(?m)^Environment=PYTHONPATH=(\S+)$", unit)
    assert (host(pythonpath) / "ferry" / "cli" / "relay.py").is_file()


def exit_code_rows() -> dict[int, tuple[str, str]]:
    """README's exit-code table: code -> (send, receive)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Exit codes") : text.index("## Configuration")]
    rows = re.findall(r"^\| (\d+) \| (.*?) \| (.*?) \|$", table, re.M)
    return {int(code): (send, receive) for code, send, receive in rows}


def test_the_exit_code_table_names_the_cases_a_new_user_meets() -> None:
    rows = exit_code_rows()
    send3, receive3 = rows[3]
    assert "FERRY_MAX_ENTRIES" in send3 and "FERRY_MAX_DEPTH" in send3  # send exits 3 for those
    assert "read-only file system" in receive3 and "disk space" in receive3
    assert all("not a ferry relay" in side for side in rows[4])
    assert all("the relay or the" in side for side in rows[7])
    assert "disk space" in rows[10][0]
