"""The receiver's side of a tree: check the manifest, stage, write as bytes arrive, install.

The order is the point: every check that can refuse (caps, unsafe or
colliding names, names that already exist, space) runs before the ANSWER,
so a refusal moves no data and leaves the output directory untouched; the
sender keeps its code alive for another try. Storage rules: client/staging.py.

Resume: a tree from a sender that can resume is staged where the next try
finds it. Then the ANSWER lists the files kept (staging.prepare()), each
with the SHA-256 of its bytes; a file the sender starts after its kept
bytes must end with the sender's DIGEST of the whole file, or it is
dropped from the staging (it starts over next time) and nothing is
stored. A cut transfer (or one the sender gave up) keeps the staging;
anything else removes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from typing import TYPE_CHECKING

from ferry import platform, units
from ferry.client.exchange import Exchange
from ferry.client.fileio import write_all
from ferry.client.partials import CUT, remove_stale
from ferry.client.peer import lost, tree_notices
from ferry.client.placement import Placement, explain, place
from ferry.client.progress import tree_label
from ferry.client.staging import Staging, resume_key
from ferry.errors import FileExists, RefusedByPeer, ResumeMismatch, TooCostly, UnsafeName
from ferry.names import display_name
from ferry.protocol import manifest, messages

if TYPE_CHECKING:
    from pathlib import Path

    from ferry.client.wire import Wire
    from ferry.protocol.receiver_session import ReceiverSession

log = logging.getLogger("ferry.receive")


def describe(offer: messages.Offer, plan: manifest.Plan) -> str:
    """The "what is coming" line: counts, size, top-level names (escaped)."""
    shown = [
        display_name(name) + ("/" if plan.is_dir[plan.paths.index((name,))] else "")
        for name in plan.top_level[:5]
    ]
    more = len(plan.top_level) - len(shown)
    names = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    counts = tree_label(offer.files, offer.entries - offer.files)
    return f"{counts}, {units.size(offer.size)}: {names}"


async def receive_tree(
    ex: Exchange, offer: messages.Offer, entries: tuple[manifest.Entry, ...]
) -> Path:
    config, wire, session = ex.config, ex.wire, ex.session
    if offer.manifest != messages.MANIFEST_VERSION:
        text = f"this receiver does not know manifest version {offer.manifest}"
        raise await ex.refuse(messages.REASON_UNSUPPORTED, text)
    if offer.entries > config.max_entries:
        text = f"{offer.entries} entries are more than this receiver takes ({config.max_entries})"
        raise await ex.refuse(messages.REASON_TOO_LARGE, text)
    if offer.resume:
        remove_stale(ex.directory)
    key = resume_key(entries) if offer.resume else None
    staging = Staging(ex.directory, key, ex.resume)
    accepted = False
    try:
        plan, placement = await _check(ex, offer, entries, staging)
        if not await ex.confirm(describe(offer, plan)):
            raise await ex.refuse(messages.REASON_DECLINED, "the receiver declined")
        kept = staging.prepare(plan, entries, session.proof)
        if kept:
            log.warning(
                "resuming: %s of %s kept from an earlier try",
                units.size(sum(k.size for k in kept)), units.counted(len(kept), "file"),
            )  # fmt: skip
        session.accept(ex.now(), kept=kept)
        accepted = True
        await wire.flush()
        if kept:
            await _judge(wire, session, staging, kept)
        await _receive_files(ex, staging, plan, entries, offer)
        staging.seal(plan, entries)
        staging.install(placement)
    except BaseException as exc:
        # Before the ANSWER nothing was written: what an earlier try kept stays.
        cut = isinstance(exc, (*CUT, RefusedByPeer, ResumeMismatch))
        keep = cut if accepted else not staging.fresh
        if accepted and isinstance(exc, (*CUT, RefusedByPeer)) and staging.keeps(keep):
            log.warning("kept what arrived; run the same receive again to resume")
        staging.close(keep=keep)
        await wire.abort_on(exc)
        raise
    staging.close(keep=False)  # empty now
    # Like a single file's name: a renamed or hidden entry never lands silently.
    for line in tree_notices([entry.path for entry in entries], ["/".join(p) for p in plan.paths]):
        log.warning("%s", line)
    return ex.directory / plan.top_level[0]


async def _judge(
    wire: Wire, session: ReceiverSession, staging: Staging, kept: list[messages.Kept]
) -> None:
    """The sender's proofs against ours: a kept file resumes only if they match (it
    proved it has those bytes; we never show it anything of them)."""
    from ferry.protocol.events import ProofReceived

    proved = await wire.expect(ProofReceived)
    assert isinstance(proved, ProofReceived)
    matched = [
        hmac.compare_digest(mac, staging.kept_proofs[k.index])
        for k, mac in zip(kept, proved.macs, strict=True)
    ]
    for k, ok in zip(kept, matched, strict=True):
        if not ok:
            staging.kept_digests.pop(k.index, None)  # it starts over: no digest to check
    resumed = [k for k, ok in zip(kept, matched, strict=True) if ok]
    if resumed:
        log.info("resuming: %d bytes of %d file(s) kept", sum(k.size for k in resumed),
                 len(resumed))  # fmt: skip
    session.verdict(matched, asyncio.get_running_loop().time())
    await wire.flush()


async def _check(
    ex: Exchange, offer: messages.Offer, entries: tuple[manifest.Entry, ...], staging: Staging
) -> tuple[manifest.Plan, Placement]:
    seconds = ex.config.manifest_timeout
    give_up = ex.now() + seconds
    try:
        plan = manifest.plan(
            list(entries), staging.case_insensitive(), ex.config.max_depth,
            out_of_time=lambda: ex.now() > give_up,
        )  # fmt: skip
    except UnsafeName as exc:
        raise await ex.refuse(messages.REASON_BAD_NAME, exc.message, exc) from None
    except TooCostly:
        text = f"the list of {len(entries)} entries took more than {seconds:g}s to check"
        raise await ex.refuse(messages.REASON_TOO_LARGE, text) from None
    placement = place(ex.directory, plan, ex.overwrite, ex.merge)
    if placement.conflicts:
        existing = placement.conflicts
        shown = ", ".join(display_name(name) for name in existing[:_SHOWN_CONFLICTS])
        if len(existing) > _SHOWN_CONFLICTS:
            shown += f" and {len(existing) - _SHOWN_CONFLICTS} more"
        where = display_name(str(ex.directory))
        hint = explain(placement, ex.overwrite)
        raise await ex.refuse(
            messages.REASON_EXISTS, f"already there: {shown}",
            FileExists(f"already in {where}: {shown}{hint}"),
        )  # fmt: skip
    await ex.check_space(offer.size, len(entries))
    return plan, placement


_SHOWN_CONFLICTS = 10
"""Names a refusal lists at most (then "and N more")."""


async def _receive_files(
    ex: Exchange,
    staging: Staging,
    plan: manifest.Plan,
    entries: tuple[manifest.Entry, ...],
    offer: messages.Offer,
) -> None:
    from ferry.protocol.events import AllReceived, DigestReceived, FileData, Started

    wire, progress, window = ex.wire, ex.progress, ex.config.writeback_window
    fd: int | None = None
    written = written_back = received = 0
    digest: hashlib._Hash | None = None  # of the file being resumed, kept bytes and new
    files_done = 0
    progress.start(offer.size, tree_label(offer.files, offer.entries - offer.files))
    progress.files(0, offer.files)
    try:
        while True:
            wire.lost_message = lost("sender", received, offer.size)
            event = await wire.next_event()
            if isinstance(event, AllReceived):
                return
            if isinstance(event, Started):  # a kept file: where its bytes go on
                assert event.index is not None
                entry = entries[event.index]
                fd = staging.open_kept(plan.paths[event.index], entry.executable, event.offset)
                written = written_back = event.offset
                digest = staging.kept_digests[event.index] if event.offset else None
                received += event.offset
                progress.skip(event.offset)
                continue
            if isinstance(event, DigestReceived):
                assert event.index is not None and digest is not None
                if event.sha256 != digest.hexdigest():
                    staging.drop(plan.paths[event.index])
                    name = display_name(entries[event.index].path)
                    raise ResumeMismatch(
                        f"the resumed file {name} does not match the sender's "
                        "(a changed source or partial); it starts over next time"
                    )
                digest = None
                continue
            assert isinstance(event, FileData)  # all else a tree's session yields
            entry = entries[event.index]
            if fd is None:
                fd = staging.open_file(plan.paths[event.index], entry.executable)
                written = written_back = 0
            write_all(fd, event.data, display_name(entry.path))
            if digest is not None:
                digest.update(event.data)
            written += len(event.data)
            received += len(event.data)
            if written - written_back >= window:
                platform.start_writeback(fd, written_back, written - written_back)
                written_back = written
            progress.update(len(event.data))
            if event.done:
                staging.finish_file(fd, entry, plan.paths[event.index])
                fd = None
                files_done += 1
                progress.files(files_done, offer.files)
    finally:
        if fd is not None:
            os.close(fd)
        progress.close()
