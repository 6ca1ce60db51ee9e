"""`ferry relay` / `./relay :PORT`: listen first, then import the relay.

Theory of operation. A cluster restarts its nodes one by one, and a
supervisor or load balancer counts a node down until its port answers.
Importing the relay (asyncio, logging, argparse, the server) takes several
times longer than binding a socket, so this module imports only `socket`
and the address parser, binds and listens on the address it is given, and
only then imports the program (cli/relay_serve.py) and hands it the
listening sockets. A client that connects meanwhile waits in the kernel's
backlog and is served as soon as the event loop accepts; nothing it sends
is lost. `--ready-file` and the "listening on" log line still mean what
they said: written once the relay accepts and handles signals.

The address is taken early only when it is unambiguous without the full
parser: it is the first argument and no argument asks for help. Otherwise,
or when the early bind fails, the program parses and binds as before, and
reports any error in its usual one line. The program checks that the
address it parsed is the one bound early, so the early path can never
serve an address other than the one asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs more than binding
if TYPE_CHECKING:
    from ferry.relay.listen import EarlyListeners

HELP_FLAGS = frozenset({"-h", "--help"})


def listen_early(argv: Sequence[str]) -> EarlyListeners | None:
    """Bind and listen on argv's address, or None when the full parser must decide."""
    if sys.platform == "win32" or not argv or argv[0].startswith("-"):
        return None  # Windows is refused by the program; options first: let argparse parse
    if any(arg in HELP_FLAGS for arg in argv):
        return None
    from ferry.errors import InvalidAddress
    from ferry.relay.listen import bind_early

    try:
        return bind_early(argv[0])
    except (InvalidAddress, OSError):
        return None  # the program binds again and says why in its own words


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    early = listen_early(args)
    from ferry.cli.relay_serve import main as serve

    return serve(args, early=early)


if __name__ == "__main__":
    sys.exit(main())
