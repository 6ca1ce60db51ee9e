// A WebSocket to the relay as a connection for transfer/drive.js.
//
// The relay bridges /ws (subprotocol "ferry.1", binary messages whose
// boundaries mean nothing) to the byte stream a command-line client speaks
// over TCP. write() sends at most FRAME bytes per message (the relay caps a
// frame at about 1 MiB) and resolves once the socket's send buffer is under
// HIGH_WATER again: that is the page's backpressure, so a file is read from
// disk only as fast as the network takes it.

import { ConnectionLost } from '../core/errors.js';

export const SUBPROTOCOL = 'ferry.1';
const FRAME = 256 * 1024;
const HIGH_WATER = 1024 * 1024;
const POLL_MS = 4;

/** The relay's WebSocket URL for this page (same host; wss under https). */
export function relayUrl(location) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** Open a WebSocket; resolves to {write, read, close} once it is open. */
export function openSocket(url) {
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
        async write(bytes) {
          for (let at = 0; at < bytes.length; at += FRAME) {
            if (ws.readyState !== WebSocket.OPEN) throw new ConnectionLost();
            ws.send(bytes.subarray(at, Math.min(bytes.length, at + FRAME)));
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
