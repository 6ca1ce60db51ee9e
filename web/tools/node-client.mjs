// The browser's transfer code (src/transfer, src/core) as a command-line
// client over TCP, for the tests: the same bytes a page sends through the
// relay's WebSocket, sent to the relay's port directly, against the real
// ./send and ./receive (tests/e2e/test_e2e_web_client.py).
//
//   node tools/node-client.mjs send HOST:PORT FILE...     one file, or a tree of several
//   node tools/node-client.mjs send HOST:PORT --text TEXT
//   node tools/node-client.mjs receive HOST:PORT CODE DIR  (a text goes to stdout)
//   node tools/node-client.mjs receive HOST:PORT CODE DIR --decide-after SECONDS
//        (a person taking time to press Save: "node-client: offered" on stderr first)
//
// stdout: the code (send) or the text (receive); stderr: one line
// "node-client: <ErrorClass>: <message>" on failure, exit 1.
import { createWriteStream, mkdirSync, openAsBlob, readdirSync, statSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { basename, join, relative, sep } from 'node:path';
import { performance } from 'node:perf_hooks';

import { parseCode } from '../src/core/codes.js';
import { receive, send } from '../src/transfer/drive.js';
import { filesSource, textSource } from '../src/transfer/source.js';

const now = () => performance.now() / 1000;

function splitAddress(text) {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(text.slice(at + 1)) };
}

/** A TCP socket as a connection for drive.js: write/read/close. */
function tcpConnection(address) {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(address);
    const queue = [];
    let waiting = null;
    let ended = false;
    const deliver = () => {
      if (waiting && (queue.length || ended)) {
        const w = waiting;
        waiting = null;
        w(queue.length ? queue.shift() : null);
      }
    };
    socket.on('data', (data) => {
      queue.push(new Uint8Array(data.buffer, data.byteOffset, data.length));
      deliver();
    });
    const end = () => {
      ended = true;
      deliver();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', (error) => {
      end();
      reject(error);
    });
    socket.on('connect', () =>
      resolve({
        write: (bytes) =>
          new Promise((done, fail) => {
            if (socket.destroyed) return fail(new Error('socket closed'));
            socket.write(bytes, (error) => (error ? fail(error) : done()));
          }),
        read: () =>
          new Promise((done) => {
            waiting = done;
            deliver();
          }),
        close: () => socket.destroy(),
      }),
    );
  });
}

function walk(root, top) {
  const out = [];
  const stat = statSync(root);
  if (stat.isFile()) return [{ path: relative(top, root).split(sep).join('/'), file: root }];
  for (const name of readdirSync(root).sort()) out.push(...walk(join(root, name), top));
  return out;
}

async function main(argv) {
  const [command, addressText, ...rest] = argv;
  const address = splitAddress(addressText);
  const connect = () => tcpConnection(address);
  if (command === 'send') {
    let source;
    if (rest[0] === '--text') source = textSource(rest[1]);
    else {
      const files = [];
      for (const arg of rest) {
        const parent = join(arg, '..');
        for (const { path, file } of walk(arg, parent)) files.push({ path, blob: await openAsBlob(file) });
      }
      source = filesSource(files);
    }
    await send({ connect, source, now, onCode: (code) => process.stdout.write(`${code.text}\n`) });
    return;
  }
  if (command === 'receive') {
    const code = parseCode(rest[0]);
    const dir = rest[1];
    const pause = rest[2] === '--decide-after' ? Number(rest[3]) : 0;
    const result = await receive({
      connect,
      code,
      now,
      decide: async (offer, entries) => {
        if (pause) {
          process.stderr.write('node-client: offered\n');
          await new Promise((done) => setTimeout(done, pause * 1000));
        }
        if (offer.kind === 'text') {
          const parts = [];
          return { accept: true, sink: { write: (d) => parts.push(Buffer.from(d)), close: () => process.stdout.write(Buffer.concat(parts)) } };
        }
        if (offer.kind === 'file') return { accept: true, sink: fileSink(join(dir, basename(offer.name))) };
        if (offer.kind === 'tree') return { accept: true, sink: treeSink(dir, entries) };
        return { accept: false, reason: 'unsupported', message: `this receiver cannot accept a '${offer.kind}' transfer` };
      },
    });
    if (result.refused) throw new Error('refused');
    return;
  }
  throw new Error(`unknown command ${command}`);
}

function fileSink(path) {
  const stream = createWriteStream(path, { flags: 'wx' });
  return {
    write: (data) => new Promise((done, fail) => stream.write(data, (e) => (e ? fail(e) : done()))),
    close: () => new Promise((done) => stream.end(done)),
  };
}

function treeSink(dir, entries) {
  let current = null;
  let currentIndex = -1;
  for (const entry of entries) if (entry.isDir) mkdirSync(join(dir, ...entry.path.split('/')), { recursive: true });
  const open = (index) => {
    if (currentIndex !== index) {
      current = fileSink(join(dir, ...entries[index].path.split('/')));
      currentIndex = index;
    }
    return current;
  };
  return {
    write: (data, index) => open(index).write(data),
    fileDone: async (index) => {
      await open(index).close();
    },
    close: async () => {},
  };
}

try {
  await main(process.argv.slice(2));
  process.exit(0);
} catch (error) {
  process.stderr.write(`node-client: ${error.name}: ${error.message}\n`);
  process.exit(1);
}
