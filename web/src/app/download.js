// The page's half of a streamed download through the service worker
// (sw/sw.js; sw/protocol.js says what the two say to each other).
//
// Theory of operation. The page registers /sw.js when it loads (scope "/",
// no caching: the worker only answers /ferry-download/ URLs). On Save,
// streamDownload() opens a download in the worker, navigates a hidden frame
// to its URL (a frame, so the page itself never navigates away), waits until
// the browser fetched it, and returns an output {write, close, abort} for
// drive.receive() or zip.js: write() posts the bytes (moved, not copied, when
// they own their buffer and the caller gives them up: `move`; zip.js's
// library reads a chunk's length after handing it over, so its bytes are
// copied) and resolves at once while fewer than UNACKED writes
// wait for the worker's 'more', else when the next 'more' comes: that is the
// backpressure, and it keeps a round trip to the worker out of each record's
// way; abort() makes the browser's download fail; the person
// cancelling it in the browser makes the next write() throw, so the sender
// is told. A ping every few seconds keeps the worker alive while the
// download stalls.

import {
  PING_SECONDS,
  WORKER_SCOPE,
  WORKER_URL,
  downloadPath,
  newId,
} from '../sw/protocol.js';

const CANCELLED_DOWNLOAD = 'the download was cancelled in the browser';

const READY_MS = 5_000;
const STARTED_MS = 15_000;
const FRAME_KEPT_MS = 60_000;
/** Writes posted to the worker and not yet answered 'more' before write() waits. */
export const UNACKED = 8;

let registering = null;
let unusable = false;

/** Whether this browser streams downloads through a service worker (sw.js's comment says which do). */
export function canStreamDownload(nav = globalThis.navigator) {
  if (unusable || !nav?.serviceWorker || typeof ReadableStream !== 'function') return false;
  // Safari (and every browser on iOS, all WebKit whatever their name) does
  // not reliably save a download a service worker streams; it gets the other
  // ways (save.js).
  const ua = String(nav.userAgent ?? '');
  if (/iPhone|iPad|iPod/.test(ua)) return false;
  return !(/AppleWebKit/.test(ua) && !/Chrome|Chromium|Android/.test(ua));
}

/** Register the worker (at page load, so it is active by the time Save is pressed). */
export function registerWorker(nav = globalThis.navigator) {
  if (!canStreamDownload(nav)) return Promise.resolve(null);
  registering ??= nav.serviceWorker.register(WORKER_URL, { scope: WORKER_SCOPE }).catch(() => {
    unusable = true;
    return null;
  });
  return registering;
}

/** After a failure to start, the other ways are used for the rest of this page's life. */
export function giveUpStreaming() {
  unusable = true;
}

function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** The bytes as an ArrayBuffer the message can move: their own buffer if given up, else a copy. */
export function movable(bytes, move) {
  if (move && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer;
  return bytes.slice().buffer;
}

/**
 * Start a download of `name` (size: a BigInt, or null when not known) and
 * return its output; call it inside the click on Save. With `move`, write()
 * takes the buffer of bytes that span all of it (the caller never reads
 * them again). Throws when the
 * worker is missing or the browser did not start the download.
 */
export async function streamDownload({ name, size = null, zip = false, move = false,
  document = globalThis.document, nav = globalThis.navigator }) {
  await registerWorker(nav);
  if (!canStreamDownload(nav)) throw new Error('this browser has no service worker for downloads');
  const registration = await within(nav.serviceWorker.ready, READY_MS, 'the download service worker did not start');
  const worker = registration.active;
  if (!worker) throw new Error('the download service worker is not active');
  const id = newId();
  const { port1: port, port2 } = new MessageChannel();
  const waiting = new Map();
  let failure = null;
  let unacked = 0;
  let credit = null; // a write waiting for a 'more'
  const settle = (type, error = null) => {
    const found = waiting.get(type);
    if (!found) return;
    waiting.delete(type);
    if (error) found.reject(error);
    else found.resolve();
  };
  const next = (type) => new Promise((resolve, reject) => {
    if (failure) reject(failure);
    else waiting.set(type, { resolve, reject });
  });
  port.onmessage = (event) => {
    const type = event.data?.type;
    if (type === 'cancelled') {
      // A fixed sentence, so drive.js's abortFor may tell the sender why.
      failure = Object.assign(new Error(CANCELLED_DOWNLOAD), { peerText: CANCELLED_DOWNLOAD });
      for (const key of [...waiting.keys()]) settle(key, failure);
      credit?.reject(failure);
      credit = null;
    } else if (type === 'more') {
      unacked -= 1;
      credit?.resolve();
      credit = null;
    } else {
      settle(type);
    }
  };
  const ready = next('ready');
  worker.postMessage({ type: 'open', id, name, size: size === null ? null : String(size), zip }, [port2]);
  await within(ready, READY_MS, 'the download service worker did not answer');
  const started = next('started');
  const frame = document.createElement('iframe');
  frame.hidden = true;
  frame.title = 'download';
  frame.src = downloadPath(id, name);
  document.body.append(frame);
  const cleanup = () => {
    clearInterval(ping);
    port.close();
    setTimeout(() => frame.remove(), FRAME_KEPT_MS);
  };
  const ping = setInterval(() => worker.postMessage({ type: 'ping', id }), PING_SECONDS * 1000);
  try {
    await within(started, STARTED_MS, 'the browser did not start the download');
  } catch (error) {
    worker.postMessage({ type: 'abort', id, reason: error.message });
    cleanup();
    throw error;
  }
  return {
    async write(bytes) {
      if (failure) throw failure;
      if (!bytes.length) return;
      const chunk = movable(bytes, move);
      worker.postMessage({ type: 'data', id, chunk }, [chunk]);
      unacked += 1;
      while (unacked >= UNACKED) {
        await new Promise((resolve, reject) => { credit = { resolve, reject }; });
      }
    },
    async close() {
      if (failure) throw failure;
      worker.postMessage({ type: 'end', id });
      cleanup();
    },
    async abort(reason = 'the transfer failed') {
      worker.postMessage({ type: 'abort', id, reason: String(reason) });
      cleanup();
    },
  };
}
