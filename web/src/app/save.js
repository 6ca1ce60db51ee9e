// Where a received file or tree goes in the browser.
//
// Theory of operation. plan() picks one way per offer from what the browser
// has, best first:
// 1. a normal browser download, streamed to disk by the service worker
//    (download.js, sw/sw.js): Chrome, Edge, Opera and other Chromium
//    browsers, Firefox, on the desktop and on Android. No dialog: the file
//    lands where the browser saves downloads under its offered name, any
//    size, never held whole in memory. Several files or a tree become one
//    .zip download built as the records arrive (zip.js);
// 2. the File System Access API (showSaveFilePicker, showDirectoryPicker),
//    where the service worker cannot be used (it failed to start, or the
//    browser runs the page without one): the person picks a file or a
//    folder when they press Save, and every record is written to disk as it
//    arrives, any size;
// 3. otherwise (Safari on macOS and every browser on iOS, whose downloads
//    from a service worker are not reliable, and any browser without
//    service workers): the bytes (a tree: its .zip) are kept as a Blob in
//    the page and handed to the browser as a normal download at the end, so
//    they must fit in memory: at most MEMORY_LIMIT bytes (512 MiB), refused
//    beforehand ("too-large") above that.
// A file is named by the browser from the offered base name (names.js; the
// browser sanitises it as it does any download's); a tree's paths are
// checked component by component before anything is saved.

import { canStreamDownload, streamDownload } from './download.js';
import { baseName, safePath, zipName } from './names.js';
import { formatSize } from './units.js';
import { zipLength, zipSink } from './zip.js';

export { baseName, safeComponent } from './names.js';

export const MEMORY_LIMIT = 512 * 1024 * 1024;

/** What this browser has, for plan(). */
export function capabilities() {
  return {
    serviceWorker: canStreamDownload(),
    savePicker: typeof globalThis.showSaveFilePicker === 'function',
    folderPicker: typeof globalThis.showDirectoryPicker === 'function',
  };
}

/**
 * How to save an offer (kind file, stream or tree) with these capabilities:
 * {method: 'download' | 'zip-download' | 'pick-file' | 'pick-folder' |
 * 'memory' | 'memory-zip' | null, note, blocked}. Pure.
 */
export function plan(offer, entries, caps) {
  const tree = offer.kind === 'tree';
  if (tree) {
    try {
      for (const entry of entries) safePath(entry.path);
    } catch (error) {
      return { method: null, blocked: `This cannot be saved: ${error.message}.`, note: '' };
    }
  }
  if (caps.serviceWorker) {
    return tree
      ? { method: 'zip-download', note: `The files arrive as one download, ${zipName(entries)}, written to disk as they arrive.`, blocked: '' }
      : { method: 'download', note: 'It arrives as a normal download, written to disk as it arrives.', blocked: '' };
  }
  if (tree && caps.folderPicker) {
    return { method: 'pick-folder', note: 'Pick a folder: the files are written into it as they arrive.', blocked: '' };
  }
  if (!tree && caps.savePicker) {
    return { method: 'pick-file', note: 'Pick where to save it: it is written to disk as it arrives.', blocked: '' };
  }
  const size = tree ? zipLength(entries) : offer.size;
  const limit = formatSize(MEMORY_LIMIT);
  if (size > BigInt(MEMORY_LIMIT)) {
    return {
      method: null,
      note: '',
      blocked: `This is larger than this browser can hold (${limit}). Use Chrome, Edge or Firefox on a computer, or the command line (./receive).`,
    };
  }
  return {
    method: tree ? 'memory-zip' : 'memory',
    note: `This browser keeps ${tree ? 'the .zip' : 'the file'} in memory until it is complete, then downloads it (at most ${limit}); Chrome, Edge and Firefox stream it straight to disk.`,
    blocked: '',
  };
}

/** The sink for drive.receive() that a plan's method gives (call inside the click on Save). */
export async function openSink(method, offer, entries, document) {
  switch (method) {
    case 'download':
      // drive.receive() hands each record's fresh plaintext over and never reads it again.
      return streamDownload({ name: baseName(offer.name), size: offer.kind === 'file' ? offer.size : null, move: true, document });
    case 'zip-download':
      return zipSink(entries, await streamDownload({ name: zipName(entries), size: zipLength(entries), zip: true, document }));
    case 'pick-file':
      return pickFileSink(offer.name);
    case 'pick-folder':
      return pickFolderSink(entries);
    case 'memory':
      return memoryFileSink(offer.name, document);
    case 'memory-zip':
      return zipSink(entries, memoryFileSink(zipName(entries), document));
    default:
      throw new Error('this browser cannot save it');
  }
}

/** Streaming to a file the person picked (call inside the click on Save); the sink's `name` is the picked file's. */
export async function pickFileSink(name) {
  const handle = await globalThis.showSaveFilePicker({ suggestedName: baseName(name) });
  const writable = await handle.createWritable();
  return {
    name: handle.name, // what the person picked, for the done view
    write: (data) => writable.write(data),
    close: () => writable.close(),
    abort: () => writable.abort(),
  };
}

/** Keeping the bytes in memory, then a normal download under the offered name. */
export function memoryFileSink(name, document) {
  const parts = [];
  return {
    write: async (data) => {
      parts.push(data); // a fresh array per record (WebCrypto output)
    },
    close: async () => {
      const url = URL.createObjectURL(new Blob(parts, { type: 'application/octet-stream' }));
      parts.length = 0;
      const link = document.createElement('a');
      link.href = url;
      link.download = baseName(name);
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    },
    abort: async () => {
      parts.length = 0;
    },
  };
}

/** A tree into a folder the person picked: directories first, each file streamed. */
export async function pickFolderSink(entries) {
  const paths = entries.map((entry) => safePath(entry.path));
  const root = await globalThis.showDirectoryPicker({ mode: 'readwrite' });
  const dirs = new Map([['', root]]);
  async function dirOf(parts) {
    let key = '';
    let dir = root;
    for (const part of parts) {
      key = `${key}/${part}`;
      if (!dirs.has(key)) dirs.set(key, await dir.getDirectoryHandle(part, { create: true }));
      dir = dirs.get(key);
    }
    return dir;
  }
  for (let i = 0; i < entries.length; i += 1) if (entries[i].isDir) await dirOf(paths[i]);
  let open = null;
  let openIndex = -1;
  async function writer(index) {
    if (openIndex !== index) {
      const parts = paths[index];
      const dir = await dirOf(parts.slice(0, -1));
      const file = await dir.getFileHandle(parts[parts.length - 1], { create: true });
      open = await file.createWritable();
      openIndex = index;
    }
    return open;
  }
  return {
    name: root.name, // the folder the person picked, for the done view
    write: async (data, index) => (await writer(index)).write(data),
    fileDone: async (index) => {
      await (await writer(index)).close();
      open = null;
      openIndex = -2;
    },
    close: async () => {},
    abort: async () => {
      await open?.abort();
    },
  };
}
