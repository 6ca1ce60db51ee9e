"""No client module imports a system-only module at import time, except ferry.platform.

The clients run on Linux, macOS and Windows: a module-level `import fcntl` (or
termios, resource, pwd, grp, tty, pty; msvcrt, winreg on the other side) in
any of them stops `send` or `receive` on the system that lacks it before a
single line runs. Such modules are imported in ferry/platform.py only, and
only on the system that has them. The relay may import them inside
functions, after its own check (cli/relay.py refuses Windows first).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ferry"
SYSTEM_ONLY = frozenset(
    {"fcntl", "termios", "resource", "pwd", "grp", "tty", "pty", "posix", "msvcrt", "winreg",
     "_winapi", "nt"}
)  # fmt: skip
CLIENT_SIDE = [
    *sorted((SRC / "client").glob("*.py")),
    *sorted((SRC / "protocol").glob("*.py")),
    *(SRC / "cli" / name for name in ("send.py", "receive.py", "common.py", "main.py",
                                      "parser.py", "relay.py", "relay_serve.py", "launcher.py")),
    *(SRC / name for name in ("crypto.py", "codes.py", "names.py", "address.py", "config.py",
                              "errors.py", "environment.py", "netopts.py", "__main__.py")),
    *sorted((SRC / "relay").glob("*.py")),  # imported by cli/relay.py before its check
]  # fmt: skip


def import_time_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import that runs when the module is imported: at module
    level, including inside if/try/with blocks, not inside functions or classes' methods."""
    found: list[tuple[int, str]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.lineno, node.module.split(".")[0]))
            elif isinstance(node, ast.ClassDef | ast.With):
                visit(node.body)
            elif isinstance(node, ast.If | ast.For | ast.While):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                visit(node.orelse)
                visit(node.finalbody)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return found


def test_the_list_of_client_modules_is_not_empty_and_exists() -> None:
    assert len(CLIENT_SIDE) > 40
    for path in CLIENT_SIDE:
        assert path.is_file(), path


@pytest.mark.parametrize("path", CLIENT_SIDE, ids=lambda path: str(path.relative_to(SRC)))
def test_no_system_only_module_is_imported_at_import_time(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bad = [(line, name) for line, name in import_time_imports(tree) if name in SYSTEM_ONLY]
    assert not bad, f"{path.relative_to(SRC)} imports {bad} at import time: use ferry.platform"


def test_the_checker_sees_imports_inside_blocks_but_not_inside_functions() -> None:
    source = (
        "import os\ntry:\n    import fcntl\nexcept ImportError:\n    pass\n"
        "if True:\n    from termios import TCSANOW\n"
        "def f():\n    import resource\n"
    )
    names = [name for _, name in import_time_imports(ast.parse(source))]
    assert names == ["os", "fcntl", "termios"]


def test_the_platform_module_imports_them_only_through_its_guard() -> None:
    tree = ast.parse((SRC / "platform.py").read_text(encoding="utf-8"))
    direct = [name for _, name in import_time_imports(tree) if name in SYSTEM_ONLY]
    assert direct == []  # via _optional_module(), and only on the system that has them
