// Where a received file goes in the browser.
//
// Theory of operation. Two ways, chosen by what the browser has:
// - the File System Access API (showSaveFilePicker; Chrome, Edge, Opera
//   and other Chromium browsers on the desktop): the person picks where
//   the file goes when they press Save, and every record is written to
//   disk as it arrives: streamed, never held whole in memory, any size;
//   a folder (showDirectoryPicker) for several files;
// - otherwise (Firefox, Safari, browsers on phones): the bytes are kept
//   as a Blob in the page and handed to the browser as a normal download
//   at the end, so the file must fit in memory: at most MEMORY_LIMIT
//   bytes (500 MB), refused beforehand ("too-large") above that. Several files
//   cannot be received there (a streamed zip is future work); they are
//   refused ("unsupported") with a sentence that says so.
// A file is named by the browser from the offered name (the browser
// sanitises it as it does any download's); a tree's paths are checked
// here component by component before anything is created.

export const MEMORY_LIMIT = 500 * 1000 * 1000;

export function canStream() {
  return typeof globalThis.showSaveFilePicker === 'function';
}

export function canSaveFolders() {
  return typeof globalThis.showDirectoryPicker === 'function';
}

/** A path component that cannot leave the chosen folder, or null. */
export function safeComponent(name) {
  if (!name || name === '.' || name === '..' || name.length > 255) return null;
  if (/[\/\\\p{Cc}\p{Cf}]/u.test(name) || /^\s|\s$/.test(name)) return null;
  return name;
}

/** The base name to suggest for an offered name. */
export function baseName(name) {
  const parts = String(name).split(/[\/\\]/);
  const last = parts[parts.length - 1].replace(/[\p{Cc}\p{Cf}]/gu, '_');
  return last && last !== '.' && last !== '..' ? last : 'download';
}

/** Streaming to a file the person picked (call inside the click on Save). */
export async function pickFileSink(name) {
  const handle = await globalThis.showSaveFilePicker({ suggestedName: baseName(name) });
  const writable = await handle.createWritable();
  return {
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
  const root = await globalThis.showDirectoryPicker({ mode: 'readwrite' });
  const paths = entries.map((entry) => {
    const parts = entry.path.split('/').map(safeComponent);
    if (parts.some((part) => part === null)) throw new Error(`unsafe name in the offer: ${entry.path}`);
    return parts;
  });
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
