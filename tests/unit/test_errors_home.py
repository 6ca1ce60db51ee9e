"""Every exception class ferry defines lives in errors.py and is a FerryError, so the
CLI maps any of them to one line and an exit code, and there is one place to look."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from ferry import errors

SRC = Path(__file__).resolve().parents[2] / "src" / "ferry"


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    return base.id if isinstance(base, ast.Name) else ""


def exception_classes_outside(root: Path, known: set[str]) -> list[str]:
    """`path:line Name` of each class under root, errors.py aside, whose base is an
    exception: a class errors.py defines, a builtin one, or anything named *Error."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "errors.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {_base_name(base) for base in node.bases}
            if bases & (known | {"Exception", "BaseException"}) or any(
                name.endswith("Error") for name in bases
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return found


def test_every_exception_class_is_defined_in_errors_py() -> None:
    known = {name for name, obj in vars(errors).items() if inspect.isclass(obj)}
    assert exception_classes_outside(SRC, known) == []


def test_every_exception_class_in_errors_py_is_a_ferry_error() -> None:
    classes = [obj for obj in vars(errors).values() if inspect.isclass(obj)]
    assert len(classes) > 30
    assert [c.__name__ for c in classes if not issubclass(c, errors.FerryError)] == []


def test_the_check_finds_an_exception_class_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "errors.py").write_text("class FerryError(Exception): ...\n")
    (tmp_path / "a.py").write_text(
        "import ferry.errors as e\nclass A(Exception): ...\nclass B(e.FerryError): ...\n"
        "class C(ValueError): ...\nclass D: ...\n"
    )
    assert exception_classes_outside(tmp_path, {"FerryError"}) == [
        "a.py:2 A", "a.py:3 B", "a.py:4 C",
    ]  # fmt: skip
