"""Create the project's virtual environment (.venv) from the lock files, once, safely.

Run by the ./send and ./receive shims (scripts/run-client) when .venv is
missing or stale, and by `make setup` / `make setup-dev`. Standard library
only. All output goes to stderr: stdout belongs to the programs (send
prints its code there).

Theory of operation:
- What gets installed is a lock file, requirements/runtime.txt (or dev.txt
  with --dev), every release pinned with its sha256 hashes and installed
  with `pip install --require-hashes --only-binary :all:`. `make lock`
  (uv pip compile --universal) regenerates them from pyproject.toml, for
  every platform at once: a line whose environment marker does not hold
  here (colorama on Windows, say) is not this machine's to install.
- POSIX only (Linux, macOS): it serves the sh shims. It imports nothing
  POSIX-only at import time; on Windows main() says in one line to use
  send.cmd / receive.cmd or `py -m pip install .` instead (README).
- Freshness is content, not time: the stamp (.venv/.ferry-ready,
  .ferry-dev-ready) holds a sha256 of this file, pyproject.toml,
  src/ferry/__init__.py (the version) and the lock, in that order; the
  shims hash the same files the same way, so a warm start runs no Python
  before ferry itself. A file lock serialises parallel first runs; the
  stamp is written last, so an interrupted run is simply redone.
- The project itself is not built. A `ferry.pth` holding the path of src/
  *relative to site-packages* (site.py joins relative lines to the
  site-packages directory) puts the code on the path, so a copied or moved
  checkout runs its own code; a minimal dist-info (METADATA, INSTALLER,
  entry_points.txt, RECORD) makes importlib.metadata and pip see ferry at
  the version `ferry --version` prints; .venv/bin/ferry finds its Python
  relative to itself.
- pip comes from the running Python when it can install into another
  environment (pip >= 22.3 ships the runner `pip --python` uses; no
  ensurepip, about 1.5 s for a first run instead of 5), otherwise from
  ensurepip inside .venv.
- Without the package index, nothing hangs: pip gets a per-connection
  timeout and one retry, the whole install an overall bound
  (FERRY_SETUP_TIMEOUT, seconds), and pip's own output is captured. If the
  packages the runtime needs are already installed on the system in the
  versions pyproject.toml accepts, .venv uses them (system site-packages);
  otherwise one line says what to do and the exit code is EXIT_SETUP.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

BOOTSTRAP = Path(__file__).resolve()
ROOT = BOOTSTRAP.parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
CREATED = VENV / ".ferry-created"
LOCKS = {False: ROOT / "requirements" / "runtime.txt", True: ROOT / "requirements" / "dev.txt"}
STAMPS = {False: VENV / ".ferry-ready", True: VENV / ".ferry-dev-ready"}
# The stamp's key covers these files, then the lock; scripts/run-client hashes the same.
KEYED = [BOOTSTRAP, ROOT / "pyproject.toml", ROOT / "src" / "ferry" / "__init__.py"]

EXIT_SETUP = 11  # README's exit-code table: the first-run set-up failed
PIP_SOCKET_TIMEOUT = 10  # s pip waits for one connection or read before a retry
PIP_RETRIES = 1
SETUP_TIMEOUT = 120.0  # s for the whole install unless FERRY_SETUP_TIMEOUT says otherwise
INSTALLER = "ferry-bootstrap"
ON_WINDOWS = os.name == "nt"
WINDOWS = (
    "ferry: scripts/bootstrap.py sets up .venv for the ./send and ./receive shell shims; "
    "on Windows run send.cmd / receive.cmd, or `py -m pip install .` and then `ferry send`"
)
# pip's words for "could not talk to the index" (as opposed to a refused or broken package).
UNREACHABLE = re.compile(
    r"Retrying \(Retry\(|NewConnectionError|ConnectTimeoutError|ReadTimeoutError|"
    r"Read timed out|Connection refused|Failed to establish a new connection|"
    r"Name or service not known|Temporary failure in name resolution|"
    r"Network is unreachable|ProxyError|SSLError|Could not fetch URL"
)
PROBE = (
    "import importlib.metadata as m, json, sysconfig; print(json.dumps({"
    "'purelib': sysconfig.get_path('purelib'), "
    "'versions': {d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}"
    "}))"
)
SCRIPT = """\
#!/bin/sh
'''true' && f=$0
while [ -h "$f" ]; do
  l=$(readlink -- "$f") && case $l in /*) f=$l ;; *) f=$(dirname -- "$f")/$l ;; esac
done
exec "$(dirname -- "$f")/python" "$0" "$@"
' '''
# Console script written by scripts/bootstrap.py: the shell lines above run the
# Python next to this file (following symlinks with plain POSIX readlink, not GNU
# readlink -f), wherever the checkout is.
import sys
from {module} import {function}
sys.exit({function}())
"""


class SetupFailed(Exception):
    """The one line a user reads when .venv cannot be made."""


class IndexUnreachable(SetupFailed):
    """pip could not reach the package index (or it did not answer in time)."""


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def stamp_key(lock: Path) -> str:
    digest = hashlib.sha256()
    for path in [*KEYED, lock]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def is_fresh(stamp: Path, key: str, accept_system: bool) -> bool:
    """The stamp records this key, and system packages only if the caller accepts them."""
    try:
        recorded = stamp.read_text().split()
    except OSError:
        return False
    if not PYTHON.exists() or recorded[:1] != [key]:
        return False
    return accept_system or recorded[1:] != ["system"]


def project() -> dict[str, object]:
    import tomllib  # here, not at the top: main() first checks the Python version

    with open(ROOT / "pyproject.toml", "rb") as file:
        table: dict[str, object] = tomllib.load(file)["project"]
    return table


def project_version() -> str:
    """The version lives in src/ferry/__init__.py (pyproject's version is dynamic)."""
    text = (ROOT / "src" / "ferry" / "__init__.py").read_text()
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    if not found:
        raise SetupFailed("src/ferry/__init__.py has no __version__")
    return found.group(1)


def read_pins(lock: Path) -> dict[str, str]:
    """{canonical name: version} of every `name==version [; marker]` line of a lock file
    whose marker holds here."""
    pins = {}
    for line in lock.read_text().splitlines():
        found = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;([^\\]*))?", line)
        if found and applies(found.group(3)):
            pins[canonical(found.group(1))] = found.group(2)
    return pins


# -- PEP 508 environment markers, the subset a lock and pyproject.toml use -------------

MARKER_TOKEN = re.compile(
    r"\s*(?:(?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)|(?P<paren>[()])"
    r"|(?P<bool>and|or)\b|(?P<var>[a-z_]+)\b|'(?P<single>[^']*)'|\"(?P<double>[^\"]*)\")"
)
VERSION_MARKERS = {"python_version", "python_full_version", "implementation_version"}


def marker_environment() -> dict[str, str]:
    """The values PEP 508 markers are evaluated against, for the running Python."""
    info = sys.implementation.version
    return {
        "os_name": os.name,
        "sys_platform": sys.platform,
        "platform_machine": platform.machine(),
        "platform_system": platform.system(),
        "platform_release": platform.release(),
        "platform_version": platform.version(),
        "platform_python_implementation": platform.python_implementation(),
        "implementation_name": sys.implementation.name,
        "implementation_version": f"{info.major}.{info.minor}.{info.micro}",
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "python_full_version": platform.python_version(),
    }


def marker_holds(marker: str, environment: dict[str, str]) -> bool:
    """Evaluate a marker (and, or, parentheses, comparisons); ValueError if it is not one."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while marker[position:].strip():
        found = MARKER_TOKEN.match(marker, position)
        if not found:
            raise ValueError(f"not a marker: {marker!r}")
        kind = found.lastgroup or ""
        text = found.group(kind)
        if kind == "var" and text not in environment:
            raise ValueError(f"unknown marker variable {text!r}")
        tokens.append((kind, " ".join(text.split()) if kind == "op" else text))
        position = found.end()
    tokens.append(("end", ""))
    index = 0

    def take(kind: str, text: str | None = None) -> str:
        nonlocal index
        have_kind, have_text = tokens[index]
        if have_kind != kind or (text is not None and have_text != text):
            raise ValueError(f"not a marker: {marker!r}")
        index += 1
        return have_text

    def value() -> tuple[str, bool]:
        kind, text = tokens[index]
        if kind == "var":
            take("var")
            return environment[text], text in VERSION_MARKERS
        if kind in ("single", "double"):
            return take(kind), False
        raise ValueError(f"not a marker: {marker!r}")

    def comparison() -> bool:
        if tokens[index] == ("paren", "("):
            take("paren", "(")
            result = disjunction()
            take("paren", ")")
            return result
        left, left_version = value()
        operator = take("op")
        right, right_version = value()
        if operator == "in":
            return left in right
        if operator == "not in":
            return left not in right
        if left_version or right_version:
            if operator in ("===", "~="):
                raise ValueError(f"unsupported version comparison in {marker!r}")
            return satisfies(left, f"{operator}{right}")
        if operator in ("==", "==="):
            return left == right
        if operator == "!=":
            return left != right
        raise ValueError(f"{operator} on a string in {marker!r}")

    def conjunction() -> bool:
        result = comparison()
        while tokens[index] == ("bool", "and"):
            take("bool")
            result = comparison() and result
        return result

    def disjunction() -> bool:
        result = conjunction()
        while tokens[index] == ("bool", "or"):
            take("bool")
            result = conjunction() or result
        return result

    result = disjunction()
    take("end")
    return result


def applies(marker: str | None) -> bool:
    """Whether a requirement with this marker is for this machine (unreadable: assume so)."""
    if not marker or not marker.strip():
        return True
    try:
        return marker_holds(marker, marker_environment())
    except ValueError:
        return True


def probe(pythonpath: bool = False) -> tuple[Path, dict[str, str]]:
    """.venv's site-packages and {canonical name: version} of what its Python sees
    (what PYTHONPATH adds only if asked: it is not part of .venv)."""
    env = {name: value for name, value in os.environ.items() if pythonpath or name != "PYTHONPATH"}
    command = [str(PYTHON), "-c", PROBE]
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    found = json.loads(result.stdout)
    versions = {canonical(name): version for name, version in found["versions"].items()}
    return Path(found["purelib"]), versions


def create() -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    venv.EnvBuilder(with_pip=False).create(VENV)  # pip comes from pip_command()
    CREATED.touch()


def set_system_site(on: bool) -> None:
    """Let .venv see the system's site-packages, or not (a pyvenv.cfg setting)."""
    config = VENV / "pyvenv.cfg"
    text = re.sub(
        r"(?m)^include-system-site-packages\s*=.*$",
        f"include-system-site-packages = {'true' if on else 'false'}",
        config.read_text(),
    )
    config.write_text(text)


def outer_pip() -> list[str] | None:
    """This Python's pip, run by .venv's Python, if it knows how (pip >= 22.3).

    The same as `pip --python .venv/bin/python`, minus the first pip process
    that would only start this one (half a second of a first run).
    """
    spec = importlib.util.find_spec("pip")
    if spec is None or spec.origin is None:
        return None
    runner = Path(spec.origin).parent / "__pip-runner__.py"
    return [str(PYTHON), str(runner)] if runner.is_file() else None


def pip_command(purelib: Path) -> list[str]:
    """A pip that installs into .venv: this Python's, or one ensurepip puts in .venv."""
    outer = outer_pip()
    if outer:
        return outer
    if not (purelib / "pip").is_dir():
        made = subprocess.run(
            [str(PYTHON), "-m", "ensurepip", "--default-pip"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
        if made.returncode != 0:
            raise SetupFailed(
                f"cannot install packages: {sys.executable} has no pip (22.3 or newer) and "
                "no ensurepip; install pip for it (Debian: apt install python3-pip python3-venv)"
            )
    return [str(PYTHON), "-m", "pip"]


def setup_timeout() -> float:
    text = os.environ.get("FERRY_SETUP_TIMEOUT", "")
    try:
        value = float(text) if text else SETUP_TIMEOUT
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise SetupFailed(f"FERRY_SETUP_TIMEOUT must be a positive number of seconds, not {text!r}")
    return value


def run_pip(pip: list[str], lock: Path) -> None:
    """Install the lock; pip's output is kept, and shown only if it failed for another reason."""
    command = [
        *pip, "install", "--require-hashes", "--only-binary", ":all:", "--no-compile",
        "--disable-pip-version-check", "--no-input", "--timeout", str(PIP_SOCKET_TIMEOUT),
        "--retries", str(PIP_RETRIES), "-r", str(lock),
    ]  # fmt: skip
    bound = setup_timeout()
    # Without PYTHONPATH, or pip would take what it lists as installed and put nothing in .venv.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    # Its own session: on timeout or Ctrl-C the whole group goes, whatever pip started.
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, env=env,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        output = b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    text = output.decode(errors="replace")
    if os.environ.get("FERRY_DEBUG") and proc.returncode != 0:
        sys.stderr.write(text)
    if proc.returncode == 0:
        return
    if proc.returncode < 0 or UNREACHABLE.search(text):
        raise IndexUnreachable(index_message())
    errors = [line for line in text.splitlines() if line.startswith("ERROR:")]
    detail = errors[-1].removeprefix("ERROR:").strip() if errors else f"pip said {proc.returncode}"
    raise SetupFailed(f"could not install {lock.relative_to(ROOT)}: {detail}")


def index_message() -> str:
    names = [name for name, _ in runtime_requirements()]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    return (
        f"first run needs the Python package index to install {listed}; run `make setup` "
        "where it is reachable, or set PIP_INDEX_URL"
    )


def runtime_requirements() -> list[tuple[str, str]]:
    """(name, version specifier) of each runtime dependency in pyproject.toml for this machine
    (those whose environment marker holds here)."""
    dependencies = project()["dependencies"]
    assert isinstance(dependencies, list)
    pattern = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*([^;]*)(?:;(.*))?")
    found = [pattern.match(str(spec)) for spec in dependencies]
    return [
        (match.group(1), match.group(2).strip())
        for match in found
        if match and applies(match.group(3))
    ]


def release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version (pre/post/dev suffixes ignored), 3 places at least."""
    found = re.match(r"\d+(?:\.\d+)*", version.strip())
    parts = [int(part) for part in found.group().split(".")] if found else [0]
    return tuple(parts + [0] * (3 - len(parts)))


def satisfies(version: str, specifier: str) -> bool:
    """Whether a version meets a comma-separated list of >=, >, <=, <, ==, != clauses."""
    have = release(version)
    for clause in filter(None, (part.strip() for part in specifier.split(","))):
        found = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9.]*)", clause)
        if not found:
            return False  # an operator we do not evaluate: do not claim a match
        operator, want = found.group(1), release(found.group(2))
        ok = {
            ">=": have >= want, "<=": have <= want, "==": have == want,
            "!=": have != want, ">": have > want, "<": have < want,
        }[operator]  # fmt: skip
        if not ok:
            return False
    return True


def use_system_packages() -> bool:
    """Run on what is already installed, if it is what pyproject.toml accepts."""
    set_system_site(True)
    _, versions = probe(pythonpath=True)
    found = []
    for name, specifier in runtime_requirements():
        have = versions.get(canonical(name))
        if have is None or not satisfies(have, specifier):
            set_system_site(False)
            return False
        found.append((name, have))
    modules = ", ".join(canonical(name).replace("-", "_") for name, _ in found)
    if subprocess.run([str(PYTHON), "-c", f"import {modules}"], capture_output=True).returncode:
        set_system_site(False)
        return False
    listed = ", ".join(f"{name} {have}" for name, have in found)
    print(
        f"ferry: the package index is unreachable; using the installed {listed} "
        "(`make setup` installs the locked versions)",
        file=sys.stderr,
    )
    return True


def record_line(path: Path, purelib: Path) -> str:
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{os.path.relpath(path, purelib)},sha256={digest},{len(data)}\n"


def write_project_files(purelib: Path) -> None:
    """ferry.pth, bin/ferry and a dist-info: what an editable install leaves, minus the build."""
    table = project()
    version = project_version()
    written = []
    pth = purelib / "ferry.pth"
    pth.write_text(os.path.relpath(ROOT / "src", purelib) + "\n")  # relative: survives a move
    written.append(pth)
    scripts = table.get("scripts", {})
    assert isinstance(scripts, dict)
    for name, target in scripts.items():
        module, function = str(target).split(":")
        script = VENV / "bin" / name
        script.write_text(SCRIPT.format(module=module, function=function))
        script.chmod(0o755)
        written.append(script)
    for old in purelib.glob("ferry-*.dist-info"):
        shutil.rmtree(old)
    info = purelib / f"ferry-{version}.dist-info"
    info.mkdir()
    metadata = [
        "Metadata-Version: 2.1", "Name: ferry", f"Version: {version}",
        f"Summary: {table['description']}", f"Requires-Python: {table['requires-python']}",
    ]  # fmt: skip
    dependencies = table["dependencies"]
    assert isinstance(dependencies, list)
    metadata += [f"Requires-Dist: {spec}" for spec in dependencies]
    extras = table.get("optional-dependencies", {})
    assert isinstance(extras, dict)
    for extra, specs in extras.items():
        metadata.append(f"Provides-Extra: {extra}")
        metadata += [f'Requires-Dist: {spec}; extra == "{extra}"' for spec in specs]
    files = {
        "METADATA": "\n".join(metadata) + "\n",
        "INSTALLER": f"{INSTALLER}\n",
        "entry_points.txt": "[console_scripts]\n"
        + "".join(f"{name} = {target}\n" for name, target in scripts.items()),
    }
    for name, text in files.items():
        (info / name).write_text(text)
        written.append(info / name)
    record = "".join(record_line(path, purelib) for path in written)
    (info / "RECORD").write_text(record + f"{info.name}/RECORD,,\n")


def install(lock: Path, dev: bool, purelib: Path, versions: dict[str, str]) -> str:
    """Make .venv hold the lock's pins; 'locked', or 'system' if it runs on system packages."""
    pins = read_pins(lock)
    if all(versions.get(name) == version for name, version in pins.items()):
        return "locked"  # e.g. only the version or the bootstrap changed: no pip needed
    print(f"ferry: setting up .venv from {lock.relative_to(ROOT)}", file=sys.stderr)
    try:
        run_pip(pip_command(purelib), lock)
    except IndexUnreachable:
        if not dev and use_system_packages():
            return "system"
        raise
    return "locked"


def ensure(dev: bool, accept_system: bool) -> None:
    import fcntl  # here, not at the top: main() first says what to do on Windows

    with open(ROOT / ".venv.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if is_fresh(STAMPS[dev], stamp_key(LOCKS[dev]), accept_system):
            return  # another process finished while we waited
        if CREATED.exists() and PYTHON.exists():
            set_system_site(False)  # a fallback to system packages is retried each time
            purelib, versions = probe()
        else:  # absent, or half-made: start over
            create()
            # Empty, and made by this very Python: no need to ask .venv's Python.
            purelib = Path(sysconfig.get_path("purelib", "venv", {"base": VENV, "platbase": VENV}))
            versions = {}
        mode = install(LOCKS[dev], dev, purelib, versions)
        write_project_files(purelib)
        for which in {False, dev}:  # the dev lock holds the runtime lock's pins
            STAMPS[which].write_text(f"{stamp_key(LOCKS[which])} {mode}\n")


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - run by whatever python3 the machine has
        print(f"ferry needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}",
              file=sys.stderr)  # fmt: skip
        return EXIT_SETUP
    if ON_WINDOWS:
        print(WINDOWS, file=sys.stderr)
        return EXIT_SETUP
    try:
        ensure(dev="--dev" in argv, accept_system="--accept-system" in argv)
    except SetupFailed as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"ferry: could not set up .venv: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print("ferry: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
