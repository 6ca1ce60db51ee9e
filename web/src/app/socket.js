// A WebSocket to the relay as a connection for transfer/drive.js.
//
// The relay bridges /ws (subprotocol "ferry.1", binary messages whose
// boundaries mean nothing) to the byte stream a command-line client speaks
// over TCP. write() sends at most FRAME bytes per message (the relay caps a
// frame at about 1 MiB).
//
// Backpressure, sending: write() resolves once the socket's send buffer is
// under HIGH_WATER again, so a file is read from disk only as fast as the
// network takes it.
//
// Backpressure, receiving: the WebSocket API delivers every message as an
// event the page cannot refuse, so a page whose sink (the disk) is slower
// than the network would queue the difference here, in memory. Where the
// browser has WebSocketStream (Chromium 124 and later), a receiving
// connection (`paced`) reads through it instead: a message is taken off the
// stream only when read() is called, which drive.receive() does only once
// the sink took the previous record. Until then the browser stops reading
// the socket, TCP's window closes, the relay's bridge holds its bounded
// buffers (within the transfer's 4 MiB budget) and stops reading the
// sender, whose writes wait: the disk sets the pace end to end, with no
// protocol change. The page then holds what the browser's own stream
// queues, not the file. Elsewhere (Firefox, Safari) the classic WebSocket
// remains, with its unbounded queue (docs/SECURITY.md says so). Sending
// connections stay on the classic API: they receive only small control
// records, and its bufferedAmount paces their writes at full speed.

import { ConnectionLost } from '../core/errors.js';

export const SUBPROTOCOL = 'ferry.1';
const FRAME = 256 * 1024;
const HIGH_WATER = 1024 * 1024;
const POLL_MS = 4;

/** The relay's WebSocket URL for this page (same host; wss under https). */
export function relayUrl(location) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** The pieces of at most FRAME bytes that write() sends as one message each. */
export function* frames(bytes) {
  for (let at = 0; at < bytes.length; at += FRAME) yield bytes.subarray(at, Math.min(bytes.length, at + FRAME));
}

/**
 * Open a connection to the relay; resolves to {write, read, close, paced}
 * once it is open. With `paced`, a WebSocketStream where the browser has
 * one (paced: true in the result), so reading applies backpressure.
 */
export function openSocket(url, { paced = false, Stream = globalThis.WebSocketStream } = {}) {
  if (paced && typeof Stream === 'function') return openStream(url, Stream);
  return openClassic(url);
}

/** A WebSocketStream: nothing is read off the network before read() asks for it. */
async function openStream(url, Stream) {
  const socket = new Stream(url, { protocols: [SUBPROTOCOL] });
  let opened;
  try {
    opened = await socket.opened;
  } catch {
    throw new ConnectionLost('cannot reach the relay');
  }
  // The connection's end (an error, a close) surfaces through read() and write().
  socket.closed.catch(() => {});
  const reader = opened.readable.getReader();
  const writer = opened.writable.getWriter();
  let ended = false;
  return {
    paced: true,
    async write(bytes) {
      try {
        for (const piece of frames(bytes)) await writer.write(piece);
      } catch {
        throw new ConnectionLost();
      }
    },
    async read() {
      // A text message (never sent by the relay) is skipped, as the classic socket does.
      while (!ended) {
        let next;
        try {
          next = await reader.read();
        } catch {
          next = { done: true };
        }
        if (next.done) {
          ended = true;
          break;
        }
        if (next.value instanceof ArrayBuffer) return new Uint8Array(next.value);
        if (ArrayBuffer.isView(next.value)) return new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      }
      return null;
    },
    close() {
      try {
        socket.close({ closeCode: 1000 });
      } catch {
        // already closed
      }
    },
  };
}

/** The classic WebSocket: every message the relay sends is queued here until read. */
function openClassic(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, SUBPROTOCOL);
    ws.binaryType = 'arraybuffer';
    const queue = [];
    let waiting = null;
    let ended = false;
    let opened = false;
    const deliver = () => {
      if (waiting && (queue.length || ended)) {
        const w = waiting;
        waiting = null;
        w(queue.length ? queue.shift() : null);
      }
    };
    ws.onmessage = (event) => {
      if (event.data instanceof ArrayBuffer) {
        queue.push(new Uint8Array(event.data));
        deliver();
      }
    };
    ws.onclose = () => {
      ended = true;
      deliver();
      if (!opened) reject(new ConnectionLost('cannot reach the relay'));
    };
    ws.onerror = () => {};
    ws.onopen = () => {
      opened = true;
      resolve({
        paced: false,
        async write(bytes) {
          for (const piece of frames(bytes)) {
            if (ws.readyState !== WebSocket.OPEN) throw new ConnectionLost();
            ws.send(piece);
            while (ws.bufferedAmount > HIGH_WATER && ws.readyState === WebSocket.OPEN) {
              await new Promise((done) => setTimeout(done, POLL_MS));
            }
          }
        },
        read() {
          return new Promise((done) => {
            waiting = done;
            deliver();
          });
        },
        close() {
          if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
        },
      });
    };
  });
}
