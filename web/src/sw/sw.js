// The service worker that turns the records a page decrypts into a normal
// browser download, streamed to disk (app/download.js is the page's half,
// sw/protocol.js what they say to each other).
//
// Theory of operation. The worker holds no state but the downloads in
// progress and caches nothing: every request it does not recognise goes to
// the network untouched. A page opens a download ('open' with a port for the
// answers); the worker makes a ReadableStream for it and says 'ready'; the
// page navigates a hidden frame to /ferry-download/<id>/<name>; the worker
// answers that one request (once: the stream is then forgotten) with the
// stream, Content-Disposition attachment under the offered name, so the
// browser saves it where it saves downloads and shows its progress. The
// page sends each record's bytes ('data'); the worker answers 'more' to each,
// at once while its queue holds less than WINDOW bytes, otherwise once the
// browser has read the queue down; the page waits while UNACKED of its
// writes are unanswered (download.js). Memory stays at most WINDOW plus
// UNACKED records here and a record or two in the page, whatever the file's
// size. A failure on the page ('abort') errors the stream, so the
// browser marks the download failed instead of keeping a short file; the
// person cancelling the download is reported back ('cancelled').

import { contentDisposition } from '../app/names.js';
import { UNCLAIMED_SECONDS, WINDOW, idOfPath, validId } from './protocol.js';

const downloads = new Map();

self.addEventListener('install', (event) => {
  event.waitUntil(self.skipWaiting());
});

self.addEventListener('message', (event) => {
  const message = event.data;
  if (!message || !validId(message.id)) return;
  if (message.type === 'open' && event.ports[0]) {
    open(message, event.ports[0]);
    return;
  }
  const download = downloads.get(message.id);
  if (!download) return;
  if (message.type === 'data' && message.chunk instanceof ArrayBuffer) download.push(new Uint8Array(message.chunk));
  else if (message.type === 'end') download.end();
  else if (message.type === 'abort') download.fail(String(message.reason ?? 'the transfer failed'));
});

function open({ id, name, size, zip }, port) {
  if (downloads.has(id)) return;
  let controller;
  let owed = 0; // 'more's held back while the queue was full, one per 'data'
  let finished = false;
  const forget = () => {
    finished = true;
    clearTimeout(unclaimed);
    downloads.delete(id);
  };
  const stream = new ReadableStream(
    {
      start: (c) => { controller = c; },
      // Called whenever the queue has room again (after a read, or an
      // enqueue that left room): one held-back 'more' each time.
      pull: () => {
        if (owed > 0) {
          owed -= 1;
          port.postMessage({ type: 'more' });
        }
      },
      cancel: () => {
        forget();
        port.postMessage({ type: 'cancelled' });
      },
    },
    { highWaterMark: WINDOW, size: (chunk) => chunk.byteLength },
  );
  const headers = {
    'Content-Type': zip ? 'application/zip' : 'application/octet-stream',
    'Content-Disposition': contentDisposition(String(name)),
    'Content-Security-Policy': "default-src 'none'; sandbox",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
  };
  if (typeof size === 'string' && /^\d{1,19}$/.test(size)) headers['Content-Length'] = size;
  const unclaimed = setTimeout(() => {
    if (!finished) controller.error(new Error('nobody fetched the download'));
    forget();
  }, UNCLAIMED_SECONDS * 1000);
  downloads.set(id, {
    claim() {
      clearTimeout(unclaimed);
      port.postMessage({ type: 'started' });
      return new Response(stream, { headers });
    },
    push(chunk) {
      if (finished) return;
      controller.enqueue(chunk);
      if (controller.desiredSize > 0) port.postMessage({ type: 'more' });
      else owed += 1;
    },
    end() {
      if (!finished) controller.close();
      forget();
    },
    fail(reason) {
      if (!finished) controller.error(new Error(reason));
      forget();
    },
  });
  port.postMessage({ type: 'ready' });
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin) return;
  const id = idOfPath(url.pathname);
  if (id === null) return; // everything else: the network, as without a worker
  const download = downloads.get(id);
  if (!download || download.claimed) {
    event.respondWith(new Response('this download is over or was never started\n', {
      status: 404,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' },
    }));
    return;
  }
  download.claimed = true;
  event.respondWith(download.claim());
});
