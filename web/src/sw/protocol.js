// What the page and the service worker (sw.js) say to each other about a
// streamed download; both sides import it, the tests too.
//
//   page -> worker (worker.postMessage: each message also keeps the worker alive)
//     {type: 'open', id, name, size|null, zip}  + a MessagePort for the answers
//     {type: 'data', id, chunk: ArrayBuffer}    the next bytes of the download
//     {type: 'end', id}                          the last bytes were sent
//     {type: 'abort', id, reason}                the transfer failed: the download fails too
//     {type: 'ping', id}                         nothing to send; keep the worker alive
//   worker -> page (on the port)
//     {type: 'ready'}      the stream exists; the page may navigate to downloadPath(id, name)
//     {type: 'started'}    the browser fetched it: the download is running
//     {type: 'more'}       one per 'data': the worker's queue has room again (backpressure)
//     {type: 'cancelled'}  the person cancelled the download in the browser
//
// The id is 128 random bits in hex: the download's URL is unguessable and
// works once.

export const DOWNLOAD_PREFIX = '/ferry-download/';
export const WORKER_URL = '/sw.js';
export const WORKER_SCOPE = '/';
/** Bytes the worker queues for the browser's download before it stops saying 'more'. */
export const WINDOW = 1024 * 1024;
/** Seconds between pings while a download is open. */
export const PING_SECONDS = 10;
/** Seconds the worker keeps a stream nobody fetched. */
export const UNCLAIMED_SECONDS = 60;

const ID = /^[0-9a-f]{32}$/;

export function validId(id) {
  return typeof id === 'string' && ID.test(id);
}

/** A fresh download id. */
export function newId(random = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n))) {
  return Array.from(random(16), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The URL path the page navigates to (the name at the end is for the eye only). */
export function downloadPath(id, name) {
  return `${DOWNLOAD_PREFIX}${id}/${encodeURIComponent(name)}`;
}

/** The id in a download URL's path, or null when the path is not one. */
export function idOfPath(pathname) {
  if (!pathname.startsWith(DOWNLOAD_PREFIX)) return null;
  const id = pathname.slice(DOWNLOAD_PREFIX.length).split('/')[0];
  return validId(id) ? id : null;
}
