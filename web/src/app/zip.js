// A received tree saved as one .zip, built as its records arrive.
//
// Theory of operation. client-zip (pinned in web/package-lock.json) writes
// the format: STORE entries (the data is already as small as the sender made
// it), a data descriptor after each file (its CRC-32 and size are known only
// at its end), ZIP64 records once a file or an offset passes 4 GiB, the
// UTF-8 flag on every name, DOS modification times. It pulls: the archive
// is a ReadableStream that asks for the next file's next bytes only when the
// previous ones went out. Here each file of the manifest is a channel: the
// receiver's write(data, index) hands one piece over and resolves when the
// archive has taken it, and the archive's bytes go to `output` (the service
// worker's download stream, or memory) one chunk at a time, each write
// awaited. So a piece waits in at most one place at a time and memory holds
// a record or two whatever the tree's size.
//
// The manifest's paths are checked component by component (names.js
// safePath) before the archive starts; directories become folder entries
// (an empty one stays in the archive), files keep their mtime and whether
// they are executable. The archive's length is known from the manifest
// (predictLength), so a download can show real progress.

import { makeZip, predictLength } from 'client-zip';

import { safePath } from './names.js';

const DIR_MODE = 0o755;
const FILE_MODE = 0o644;
const EXEC_MODE = 0o755;
const MS_PER_NS = 1_000_000n;
// The DOS date in a ZIP header covers 1980..2107: mtimes outside are clamped.
const EARLIEST = Date.UTC(1980, 0, 2);
const LATEST = Date.UTC(2107, 11, 30);

function mtime(entry) {
  const ms = Number((entry.mtimeNs ?? 0n) / MS_PER_NS);
  return new Date(Math.min(LATEST, Math.max(EARLIEST, ms)));
}

/** The archive's entries for a manifest: [{name, lastModified, size?, mode, isDir, index}]; throws on an unsafe path. */
export function zipEntries(entries) {
  return entries.map((entry, index) => {
    const name = safePath(entry.path).join('/');
    if (entry.isDir) return { name, lastModified: mtime(entry), mode: DIR_MODE, isDir: true, index };
    return { name, lastModified: mtime(entry), size: BigInt(entry.size), mode: entry.executable ? EXEC_MODE : FILE_MODE, isDir: false, index };
  });
}

/** The exact byte length of the archive zipSink writes for these entries. */
export function zipLength(entries) {
  return predictLength(zipEntries(entries).map(({ name, size, isDir }) => (isDir ? { name } : { name, size })));
}

/** One file's bytes, handed over piece by piece: put() resolves once the archive took the piece. */
class Channel {
  constructor() {
    this.pieces = [];
    this.ended = false;
    this.failure = null;
    this.taker = null;
  }

  put(data) {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pieces.push({ data, resolve, reject });
      this._wake();
    });
  }

  end() {
    this.ended = true;
    this._wake();
  }

  fail(error) {
    this.failure = error;
    for (const piece of this.pieces.splice(0)) piece.reject(error);
    this._wake();
  }

  _wake() {
    const taker = this.taker;
    this.taker = null;
    taker?.();
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.failure) throw this.failure;
      const piece = this.pieces.shift();
      if (piece) {
        piece.resolve();
        if (piece.data.length) yield piece.data;
        continue;
      }
      if (this.ended) return;
      await new Promise((resolve) => { this.taker = resolve; });
    }
  }
}

/**
 * A sink for drive.receive() (write(data, index), fileDone(index), close(),
 * abort()) that writes the tree as one .zip to `output` ({write(bytes),
 * close(), abort(reason)}, each returning a promise).
 */
export function zipSink(entries, output) {
  const items = zipEntries(entries);
  const channels = new Map(items.filter((item) => !item.isDir).map((item) => [item.index, new Channel()]));
  let failure = null;
  const fail = (error) => {
    failure ??= error;
    for (const channel of channels.values()) channel.fail(failure);
  };
  const files = items.map(({ name, lastModified, mode, isDir, index }) =>
    (isDir ? { name, lastModified, mode } : { name, lastModified, mode, input: channels.get(index) }));
  const pumped = (async () => {
    const reader = makeZip(files).getReader();
    try {
      for (;;) {
        if (failure) throw failure;
        const { value, done } = await reader.read();
        if (done) return;
        await output.write(value);
      }
    } catch (error) {
      fail(error);
      await reader.cancel(error).catch(() => {});
      throw error;
    }
  })();
  pumped.catch(() => {}); // seen by write(), close() or abort()
  const channel = (index) => {
    const found = channels.get(index);
    if (!found) throw new Error(`no file at index ${index} in the manifest`);
    return found;
  };
  return {
    write: (data, index) => channel(index).put(data),
    fileDone: async (index) => channel(index).end(),
    close: async () => {
      for (const found of channels.values()) found.end();
      await pumped;
      await output.close();
    },
    abort: async (reason = 'the transfer failed') => {
      fail(new Error(String(reason)));
      await output.abort(String(reason)).catch(() => {});
    },
  };
}
