"""Where a received tree is built before anything appears under a final name.

Rules (never lose or corrupt anything, as for a single file):
- a hidden staging directory, `.ferry-<random>.part`, is created inside the
  output directory (same filesystem, so renames are atomic), mode 0700;
- the tree is built inside it from the checked plan (protocol/manifest.py):
  directories first, then files as their bytes arrive (O_EXCL|O_NOFOLLOW,
  0644, or 0755 with the executable bit; the umask applies), each file's
  mtime set when its last byte is written, directories' mtimes at the end,
  deepest first;
- a file of BIG_FILE bytes or more is fsynced when its last byte is written
  (its writeback started on the way, like a single file's); once every
  byte has arrived and authenticated, the rest is flushed to disk: one
  syncfs(2) where Linux has it and more than SYNCFS_THRESHOLD small files
  wait (fsyncs would cost more), otherwise an fsync per small file and per
  directory; then each top-level entry is renamed into the output
  directory, never over an existing name (renameat2 RENAME_NOREPLACE where
  available), and the directories renamed into are fsynced; only then is
  the ACK sent;
- what goes where is client/placement.py's: each top-level entry, or with
  --merge each entry whose parent exists in the output directory (reached
  one component at a time, never through a link); --overwrite may replace
  a regular file by a file, never a directory or a link: the old file is
  first moved aside into the staging directory (a rename, not a replace,
  which could not be undone), and deleted only once every entry is in
  place;
- if anything fails, every move is undone, last first (new entries back
  into the staging directory, old files back to their names), and the
  staging directory is removed: the output directory is as it was. An old
  file that cannot be put back (a name taken meanwhile) is never deleted:
  the staging directory is kept and the error says where it is. A crash
  during the renames can likewise leave old files in the staging directory.

A tree from a sender that can resume is staged under a name the next try
finds again, `.ferry-resume-<key>.tree` (key: the SHA-256 of the top-level
names), locked with flock(2) while a receive uses it, and used only if it
is this user's directory, closed to others (ownership.owned_privately): another
user's entry under that name is left alone, one line says so, and the
tree is staged in a new directory as if it could not resume. If the transfer is
cut it stays: prepare() on the next try removes whatever the new manifest
does not list (or lists as another kind), and offers the sender every
staged file that is not longer than the file offered, by size only: a
file resumes if the sender proves it has the same first bytes (a MAC
keyed by the session; client/partials.py has the same rules for a single
file, and removes stagings left unused for PARTIAL_MAX_AGE).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ferry import platform
from ferry.client import fileio, ownership
from ferry.client.fileio import hash_prefix, write_error
from ferry.client.partials import ignored_notice
from ferry.client.placement import Placement
from ferry.errors import LocalFileError
from ferry.names import display_name
from ferry.protocol.manifest import Entry, Plan
from ferry.protocol.messages import Kept

log = logging.getLogger("ferry.receive")

Proof = Callable[[int, int], hmac.HMAC]
"""(entry index, bytes kept) -> the resume proof to feed them to (ReceiverSession.proof)."""

STAGING_PREFIX = ".ferry-"
STAGING_SUFFIX = ".part"
RESUMABLE_PREFIX = ".ferry-resume-"
RESUMABLE_SUFFIX = ".tree"
BIG_FILE = 1024 * 1024
"""Files at least this large are fsynced as soon as they are complete, in bytes."""
EARLY_SYNC_EVERY = 2048
"""Small files written between flushes started early (on a thread), while more arrive."""
SYNCFS_THRESHOLD = 256
"""Small files still to flush above which one syncfs(2) replaces their fsyncs."""
_syncfs = platform.syncfs
_rename_no_replace = platform.rename_no_replace


def resume_key(entries: Sequence[Entry]) -> str:
    """What names a tree's resumable staging: its top-level names, as offered."""
    top = dict.fromkeys(entry.path.split("/", 1)[0] for entry in entries)
    text = "\0".join(["tree", *top])
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]


class Staging:
    def __init__(self, directory: Path, key: str | None = None, resume: bool = True) -> None:
        """A new staging directory; with `key`, the resumable one of that tree (kept
        from an earlier try unless `resume` is false)."""
        self.directory = directory
        self.resumable = key is not None
        self.fresh = True
        """Created by this receive (nothing of an earlier try is in it)."""
        self.kept_digests: dict[int, hashlib._Hash] = {}
        """Resumable: the SHA-256 of each kept file's bytes, by entry index (prepare())."""
        self.kept_proofs: dict[int, str] = {}
        """Resumable: our resume proof (hex MAC) of each kept file's bytes, by entry index,
        to compare with the sender's."""
        self._lock: int | None = None
        self._unsynced: list[tuple[str, ...]] = []
        self._parent: tuple[tuple[str, ...], int] | None = None
        self._early: threading.Thread | None = None
        """The directory the last file was created in, open (files come grouped by it)."""
        self._stranded: list[Path] = []
        """Old files set aside that could not be put back: the staging dir is kept for them."""
        if key is not None:
            path = directory / f"{RESUMABLE_PREFIX}{key}{RESUMABLE_SUFFIX}"
            if self._open_resumable(path, resume):
                return
            # Someone else's entry has the name (a shared DIR): left alone, and
            # this tree is staged as if it could not resume.
            log.warning("%s", ignored_notice(path, "staging directory"))
            self.resumable, self.fresh = False, True
        for _ in range(10):
            path = directory / f"{STAGING_PREFIX}{secrets.token_hex(8)}{STAGING_SUFFIX}"
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            except OSError as exc:
                raise LocalFileError(f"cannot write into {directory}: {exc.strerror}") from None
            self.path = path
            break
        else:
            raise LocalFileError(f"cannot create a staging directory in {directory}")

    def _open_resumable(self, path: Path, resume: bool) -> bool:
        """Create or find the resumable staging at path, and lock it; False (nothing
        done) if what has that name is not this user's private directory."""
        self.path = path
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            self.fresh = False
        except OSError as exc:
            raise LocalFileError(f"cannot write into {self.directory}: {exc.strerror}") from None
        try:
            fd = platform.open_directory_lock(path)  # Windows: a file inside it
        except OSError as exc:
            if self.fresh:
                where = self.directory
                raise LocalFileError(f"cannot write into {where}: {exc.strerror}") from None
            return False  # a link, a file, a FIFO: not ours
        info = os.fstat(fd)
        if not ownership.owned_privately(info):
            os.close(fd)
            return False
        try:
            platform.try_lock(fd)
        except BlockingIOError:
            os.close(fd)
            raise LocalFileError(
                "another receive is writing these files into the same directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock = fd
        if not resume and not self.fresh:
            _empty(path)
            self.fresh = True
        return True

    def prepare(self, plan: Plan, entries: Sequence[Entry], proof: Proof) -> list[Kept]:
        """The directories made; for a resumable staging, what an earlier try kept.

        Whatever the plan does not list (or lists as another kind) goes, as
        does every file not kept; a kept file is a regular file no longer
        than the one offered, and not empty: its bytes are hashed here (read
        back: what is on disk now counts), and fed to proof(index, size),
        the MAC the sender's proof must match.
        """
        if self.fresh:
            self.make_dirs(plan)
            return []
        stranded = sorted(self.path.glob(f"{STAGING_PREFIX}replaced-*"))
        if stranded:  # an earlier --overwrite could not put these back: never prune them
            raise LocalFileError(
                f"{display_name(str(stranded[0]))} holds replaced files that could not be put "
                "back; move them out and remove it"
            )
        try:
            wanted = {parts: is_dir for parts, is_dir in zip(plan.paths, plan.is_dir, strict=True)}
            _prune(self.path, wanted)
            self.make_dirs(plan, exist_ok=True)
            kept = []
            for index, (parts, entry) in enumerate(zip(plan.paths, entries, strict=True)):
                if entry.is_dir:
                    continue
                path = self.path.joinpath(*parts)
                found = _hash_regular(path, entry.size, functools.partial(proof, index))
                if found is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                size, digest, mac = found
                self.kept_digests[index] = digest
                self.kept_proofs[index] = mac
                kept.append(Kept(index, size))
            return kept
        except OSError as exc:
            raise LocalFileError(f"cannot resume into {self.directory}: {exc.strerror}") from None

    def open_kept(self, parts: tuple[str, ...], executable: bool, offset: int) -> int:
        """A kept file (prepare()), open for writing after its first `offset` bytes."""
        try:
            fd = platform.open_fd(self.path.joinpath(*parts), os.O_WRONLY | platform.NOFOLLOW)
            try:
                os.ftruncate(fd, offset)
                os.lseek(fd, offset, os.SEEK_SET)
                platform.set_mode(fd, ownership.umasked(0o755 if executable else 0o644))
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise LocalFileError(f"cannot resume a file: {exc.strerror}") from None
        return fd

    def drop(self, parts: tuple[str, ...]) -> None:
        """Forget a staged file (a resumed file that did not match: it starts over)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path.joinpath(*parts))

    def keeps(self, keep: bool) -> bool:
        """Whether close(keep) keeps the staging: a resumable one that holds a byte of
        some file (otherwise there is nothing to resume)."""
        return keep and self.resumable and _holds_data(self.path)

    def close(self, keep: bool) -> None:
        """Done with the staging: removed, unless keeps(keep)."""
        self._close_parent()
        if not self.keeps(keep):
            if not platform.REMOVES_OPEN_FILES:
                self._unlock()  # Windows: the lock file inside must be closed to go
            self.remove()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def case_insensitive(self) -> bool:
        """Whether this filesystem ignores case in names (probed inside the staging dir)."""
        probe = self.path / "ferry-case-probe"
        try:
            os.close(platform.open_fd(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return os.path.lexists(self.path / "FERRY-CASE-PROBE")
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def make_dirs(self, plan: Plan, exist_ok: bool = False) -> None:
        try:
            for parts, is_dir in zip(plan.paths, plan.is_dir, strict=True):
                if is_dir:
                    try:
                        os.mkdir(self.path.joinpath(*parts), 0o755)
                    except FileExistsError:
                        if not exist_ok:
                            raise
        except OSError as exc:
            raise LocalFileError(f"cannot create a directory: {exc.strerror}") from None

    def open_file(self, parts: tuple[str, ...], executable: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | platform.NOFOLLOW
        mode = 0o755 if executable else 0o644
        try:
            if not platform.OPEN_AT:  # Windows: by its whole path
                return platform.open_fd(self.path.joinpath(*parts), flags, mode)
            parent = self._open_parent(parts[:-1])
            return platform.open_fd(parts[-1], flags, mode, dir_fd=parent)
        except OSError as exc:
            raise LocalFileError(f"cannot create a file: {exc.strerror}") from None

    def _flush_early(self) -> None:
        """Start flushing what is written so far, on a thread: the disk works while more
        files arrive, and the syncfs before the rename has less left to wait for."""
        if self._early is not None and self._early.is_alive():
            return
        self._early = threading.Thread(target=_syncfs, args=(self.path,), daemon=True)
        self._early.start()

    def _open_parent(self, parts: tuple[str, ...]) -> int:
        """The staged directory `parts`, open; kept open for the next file (10,000 small
        files cost a path walk and a Path object each otherwise)."""
        if self._parent is not None:
            if self._parent[0] == parts:
                return self._parent[1]
            os.close(self._parent[1])
            self._parent = None
        flags = os.O_RDONLY | platform.DIRECTORY | platform.NOFOLLOW
        fd = platform.open_fd(self.path.joinpath(*parts), flags)
        self._parent = (parts, fd)
        return fd

    def _close_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def finish_file(self, fd: int, entry: Entry, parts: tuple[str, ...]) -> None:
        """The file's last byte is written: its mtime, fsync if large, then close."""
        try:
            with contextlib.suppress(OSError):  # a filesystem without mtimes still gets it
                platform.set_mtime(fd, self.path.joinpath(*parts), entry.mtime_ns)
            if entry.size >= BIG_FILE:
                platform.full_fsync(fd)
            else:
                self._unsynced.append(parts)
                if len(self._unsynced) % EARLY_SYNC_EVERY == 0:
                    self._flush_early()
        except OSError as exc:
            raise write_error(exc, display_name("/".join(parts))) from None
        finally:
            os.close(fd)

    def seal(self, plan: Plan, entries: tuple[Entry, ...]) -> None:
        """Directories' mtimes (deepest first), then everything flushed to disk."""
        self._close_parent()
        for parts, entry in reversed(list(zip(plan.paths, entries, strict=True))):
            if entry.is_dir:
                with contextlib.suppress(OSError):
                    os.utime(self.path.joinpath(*parts), ns=(entry.mtime_ns, entry.mtime_ns))
        if self._early is not None:
            self._early.join()
        if len(self._unsynced) <= SYNCFS_THRESHOLD or not _syncfs(self.path):
            for parts in self._unsynced:
                fileio.fsync_path(self.path.joinpath(*parts))
            for parts, is_dir in zip(plan.paths, plan.is_dir, strict=True):
                if is_dir:
                    fileio.fsync_directory(self.path.joinpath(*parts), follow=False)
        self._unsynced.clear()
        fileio.fsync_directory(self.path, follow=False)

    def install(self, placement: Placement) -> None:
        """Rename each entry the placement names into the output directory; all or none.

        The output directory's own subdirectories (those --merge adds into)
        are reached one component at a time without following links, so a
        directory swapped for a link after the checks fails the rename
        rather than sending a file elsewhere.
        """
        # Made before anything moves, while every staged name still exists
        # here: its name cannot be one that an undo needs back.
        aside = self._aside_directory() if placement.replacing else None
        done: list[tuple[tuple[str, ...], bool]] = []  # (entry, True: the old file set aside)
        try:
            for parts in placement.moves:
                if aside is not None and parts in placement.replacing:
                    _make_parents(aside, parts)
                    _move(self.directory, parts, aside, parts)
                    done.append((parts, True))
                _move(self.path, parts, self.directory, parts)
                done.append((parts, False))
            for parent in dict.fromkeys(parts[:-1] for parts in placement.moves):
                _fsync_below(self.directory, parent)
        except OSError as exc:
            self._undo(done, aside)
            if isinstance(exc, FileExistsError):
                text = f"{display_name(str(exc.filename))} appeared meanwhile; nothing was stored"
            else:
                text = f"cannot store the files: {exc.strerror}"
            if self._stranded:
                kept = ", ".join(display_name(str(path)) for path in self._stranded)
                text += f"; replaced files that could not be put back are kept: {kept}"
            raise LocalFileError(text) from None
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def _aside_directory(self) -> Path:
        """A new directory inside the staging directory for the files being replaced."""
        for _ in range(10):
            path = self.path / f"{STAGING_PREFIX}replaced-{secrets.token_hex(8)}"
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue  # a staged entry has that name
            except OSError as exc:
                raise LocalFileError(f"cannot store the files: {exc.strerror}") from None
            return path
        raise LocalFileError("cannot store the files: no name left for the replaced files")

    def _undo(self, done: list[tuple[tuple[str, ...], bool]], aside: Path | None) -> None:
        """Every move back, last first, never over a name taken meanwhile."""
        for parts, set_aside in reversed(done):
            try:
                if set_aside:
                    assert aside is not None
                    _move(aside, parts, self.directory, parts)
                else:
                    _move(self.directory, parts, self.path, parts)
            except OSError:
                if set_aside:
                    assert aside is not None
                    self._stranded.append(aside.joinpath(*parts))  # an old file: kept there

    def remove(self) -> None:
        if self._stranded:
            return  # it holds old files that could not be put back: never delete them
        shutil.rmtree(self.path, ignore_errors=True)


def _holds_data(root: Path) -> bool:
    """Whether any regular file under root has a byte in it (links are not followed)."""
    for here, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(here, name))
                if stat.S_ISREG(info.st_mode) and info.st_size:
                    return True
    return False


def _empty(path: Path) -> None:
    """Remove everything inside a directory (not the directory itself)."""
    for child in os.scandir(path):
        if child.name == platform.LOCK_NAME and not platform.CAN_OPEN_DIRECTORIES:
            continue  # the staging's own lock (Windows)
        if child.is_dir(follow_symlinks=False):
            shutil.rmtree(child.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(child.path)


def _prune(root: Path, wanted: dict[tuple[str, ...], bool]) -> None:
    """Remove what is under root but not in `wanted` (relative parts -> is a directory)."""
    for here, dirs, files in os.walk(root, topdown=False):
        rel = Path(here).relative_to(root).parts
        for name in files:  # links (to anything) too: os.walk lists them here or in dirs
            if not rel and name == platform.LOCK_NAME and not platform.CAN_OPEN_DIRECTORIES:
                continue  # the staging's own lock (Windows)
            if wanted.get((*rel, name)) is not False:
                os.unlink(os.path.join(here, name))
        for name in dirs:
            path = os.path.join(here, name)
            if os.path.islink(path):
                os.unlink(path)
            elif wanted.get((*rel, name)) is not True:
                shutil.rmtree(path)


def _hash_regular(
    path: Path, most: int, proof: Callable[[int], hmac.HMAC]
) -> tuple[int, hashlib._Hash, str] | None:
    """(size, SHA-256, proof(size)'s hex MAC) of a regular file of 1 to `most` bytes (no
    link followed), or None."""
    try:
        fd = platform.open_fd(path, os.O_RDONLY | platform.NOFOLLOW | platform.NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= most:
            return None
        mac = proof(info.st_size)
        digest, read = hash_prefix(fd, info.st_size, mac)
        return (info.st_size, digest, mac.hexdigest()) if read == info.st_size else None
    finally:
        os.close(fd)


def _open_below(root: Path, parts: tuple[str, ...]) -> int:
    """The directory root/parts, open, reached one component at a time without following
    a link (root itself may be one: the output directory given by the user). POSIX only:
    Windows cannot open a directory (_move goes by path there)."""
    fd = platform.open_fd(root, os.O_RDONLY | platform.DIRECTORY)
    try:
        for part in parts:
            flags = os.O_RDONLY | platform.DIRECTORY | platform.NOFOLLOW
            below = platform.open_fd(part, flags, dir_fd=fd)
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def _no_link_below(root: Path, parts: tuple[str, ...]) -> None:
    """Windows' _open_below: each directory of root/parts is one, and not a link (checked,
    then used by path: the only way there)."""
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink() or not here.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(here))


def _move(source_root: Path, source: tuple[str, ...], target_root: Path,
          target: tuple[str, ...]) -> None:  # fmt: skip
    """Rename source_root/source to target_root/target, never replacing anything there and
    never through a link (_open_below); an OSError names the target."""
    where = target_root.joinpath(*target)
    try:
        if not platform.CAN_OPEN_DIRECTORIES:
            _no_link_below(source_root, source[:-1])
            _no_link_below(target_root, target[:-1])
            _rename_no_replace(source_root.joinpath(*source), where)
            return
        source_dir = _open_below(source_root, source[:-1])
        try:
            target_dir = _open_below(target_root, target[:-1])
            try:
                _rename_no_replace(Path(source[-1]), Path(target[-1]), source_dir, target_dir)
            finally:
                os.close(target_dir)
        finally:
            os.close(source_dir)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(where)) from None


def _make_parents(root: Path, parts: tuple[str, ...]) -> None:
    """The directories root/parts[:-1] (inside a directory of ours: the staging one)."""
    if len(parts) > 1:
        os.makedirs(root.joinpath(*parts[:-1]), mode=0o700, exist_ok=True)


def _fsync_below(root: Path, parts: tuple[str, ...]) -> None:
    """Best effort: flush the entries of root/parts (the renames into it); POSIX only, as
    fileio.fsync_directory."""
    if platform.CAN_OPEN_DIRECTORIES:
        fileio.fsync_opened(lambda: _open_below(root, parts))
