"""How the person started ferry, so that usage lines and hints name commands they can type.

Three ways in, one code path (src/ferry/cli/main.py):
- the shims of a checkout (`./send`, `./receive`; send.cmd and receive.cmd on Windows),
  which run `python -m ferry.cli.main`: hints say `./receive` (`.\\receive` on Windows),
  and usage lines and errors name the program alone (`send: error: …`), as always;
- the `ferry` command an install puts on PATH (pip, pipx): `ferry receive …`;
- `python3 -m ferry` (`py -m ferry` on Windows): `python3 -m ferry receive …`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry import platform


@dataclass(frozen=True)
class Launcher:
    prefix: str
    """What comes before a program's name in a command the person types."""
    named: bool
    """Whether usage lines, --version and usage errors carry the prefix too."""

    def command(self, program: str) -> str:
        """The command that runs `program` ("send", "receive") the same way."""
        return f"{self.prefix}{program}"

    def prog(self, program: str) -> str:
        """The name argparse shows for `program`."""
        return self.command(program) if self.named else program


WINDOWS = platform.WINDOWS
SHIMS = Launcher(".\\" if WINDOWS else "./", named=False)
SCRIPT = Launcher("ferry ", named=True)
MODULE = Launcher("py -m ferry " if WINDOWS else "python3 -m ferry ", named=True)
