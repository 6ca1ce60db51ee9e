// Names a received file or tree is saved under, shared by the page and the
// service worker (sw/sw.js).
//
// Theory of operation. Every name here comes from the sender, so it is
// reduced before the browser sees it: a file keeps only its base name
// (control and format characters, and unpaired surrogates, replaced); a
// tree's paths are checked component by component (safeComponent) and the
// whole offer is refused if one fails, before anything is saved; the
// Content-Disposition of a streamed download says the name twice (RFC 6266):
// an ASCII `filename` for old clients and the UTF-8 `filename*` of RFC 5987
// that every current browser reads. The browser sanitises a download's name
// once more on its own.

const UNPAIRED = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The text with every unpaired surrogate replaced (encodeURIComponent throws on one). */
export function wellFormed(text) {
  return String(text).replace(UNPAIRED, '\uFFFD');
}

/** A path component that cannot leave the chosen folder, or null. */
export function safeComponent(name) {
  if (!name || name === '.' || name === '..' || name.length > 255) return null;
  if (/[\/\\\p{Cc}\p{Cf}]/u.test(name) || /^\s|\s$/.test(name)) return null;
  return wellFormed(name) === name ? name : null;
}

/** The base name to suggest for an offered name. */
export function baseName(name) {
  const parts = wellFormed(name).split(/[\/\\]/);
  const last = parts[parts.length - 1].replace(/[\p{Cc}\p{Cf}]/gu, '_').trim();
  return last && last !== '.' && last !== '..' ? last.slice(0, 255) : 'download';
}

/** A tree's "/"-separated path as its checked components; throws on an unsafe one. */
export function safePath(path) {
  const parts = String(path).split('/').map(safeComponent);
  if (!parts.length || parts.some((part) => part === null)) throw new Error(`unsafe name in the offer: ${wellFormed(path)}`);
  return parts;
}

/** The .zip a tree is saved as: its one top-level folder's name, else "ferry-files.zip". */
export function zipName(entries) {
  const tops = new Set(entries.map((entry) => String(entry.path).split('/')[0]));
  const only = tops.size === 1 ? safeComponent([...tops][0]) : null;
  const single = only !== null && entries.some((entry) => String(entry.path).startsWith(`${only}/`));
  return single ? `${only}.zip` : 'ferry-files.zip';
}

const ATTR_CHAR = /[!'()*]/g;

/** RFC 6266 Content-Disposition for a download named `name` (base name taken first). */
export function contentDisposition(name) {
  const safe = baseName(name);
  const ascii = safe.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(safe).replace(ATTR_CHAR, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
