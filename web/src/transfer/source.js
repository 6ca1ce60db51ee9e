// What a browser sends, as the OFFER, the MANIFEST and the bytes in order.
//
// Theory of operation. A text is a `text` OFFER (its UTF-8 bytes); one
// file a `file` OFFER (always, so every receiver takes it); several files,
// or a folder picked whole (each File's webkitRelativePath), a `tree`: the
// directories each path implies are listed before what they hold, then the
// files' bytes follow back to back in manifest order. Bytes are read from
// the Blobs a slice at a time (Blob.slice().arrayBuffer()), never the whole
// file at once, and afresh for each attempt.

import { utf8 } from '../core/bytes.js';
import { KIND_FILE, KIND_TEXT, KIND_TREE, MANIFEST_VERSION, encodeManifest } from '../core/messages.js';

export const READ_SIZE = 1024 * 1024;

async function* blobChunks(blob) {
  for (let at = 0; at < blob.size; at += READ_SIZE) {
    yield new Uint8Array(await blob.slice(at, Math.min(blob.size, at + READ_SIZE)).arrayBuffer());
  }
}

/** A text message. */
export function textSource(text) {
  const bytes = utf8(text);
  return {
    offer: { kind: KIND_TEXT, size: BigInt(bytes.length) },
    manifest: [],
    count: 0,
    async *chunks() {
      if (bytes.length) yield bytes;
    },
  };
}

function mtimeNs(file) {
  const ms = Number.isFinite(file.lastModified) ? Math.max(0, Math.floor(file.lastModified)) : 0;
  return BigInt(ms) * 1000000n;
}

/**
 * One file or several: `files` are {path, blob} where path is "/"-separated
 * and relative (a plain name for files picked one by one). One plain file is
 * a `file` OFFER; anything else a `tree`.
 */
export function filesSource(files) {
  if (!files.length) throw new RangeError('nothing to send');
  if (files.length === 1 && !files[0].path.includes('/')) {
    const { path, blob } = files[0];
    return {
      offer: { kind: KIND_FILE, name: path, size: BigInt(blob.size) },
      manifest: [],
      count: 1,
      chunks: () => blobChunks(blob),
    };
  }
  const entries = [];
  const dirs = new Set();
  let size = 0n;
  for (const { path, blob } of files) {
    const parts = path.split('/');
    for (let depth = 1; depth < parts.length; depth += 1) {
      const dir = parts.slice(0, depth).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ path: dir, isDir: true, size: 0n, mtimeNs: mtimeNs(blob), executable: false });
      }
    }
    entries.push({ path, isDir: false, size: BigInt(blob.size), mtimeNs: mtimeNs(blob), executable: false });
    size += BigInt(blob.size);
  }
  const manifest = encodeManifest(entries);
  return {
    offer: {
      kind: KIND_TREE,
      manifest: MANIFEST_VERSION,
      entries: BigInt(entries.length),
      files: BigInt(files.length),
      records: BigInt(manifest.length),
      size,
    },
    manifest,
    count: files.length,
    async *chunks() {
      for (const { blob } of files) yield* blobChunks(blob);
    },
  };
}
