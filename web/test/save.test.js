// The page's saving: sizes, names, the plan per browser, the streamed .zip.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { canStreamDownload, movable } from '../src/app/download.js';
import { baseName, contentDisposition, safeComponent, safePath, zipName } from '../src/app/names.js';
import { MEMORY_LIMIT, plan } from '../src/app/save.js';
import { formatSize } from '../src/app/units.js';
import { zipEntries, zipLength, zipSink } from '../src/app/zip.js';

const MiB = 1024 * 1024;
const NS = 1_000_000_000n;

test('sizes read as the command line writes them (ferry.units.size)', () => {
  // Each pair printed by src/ferry/units.py's size().
  const cases = [
    [0, '0 B'], [1, '1 B'], [1023, '1023 B'], [1024, '1.0 KiB'], [1280, '1.2 KiB'],
    [1331, '1.3 KiB'], [1587, '1.5 KiB'], [104857600, '100.0 MiB'], [536870912, '512.0 MiB'],
    [3145745, '3.0 MiB'], [11000, '10.7 KiB'], [1048575, '1.0 MiB'], [1048524, '1023.9 KiB'],
    [5905580032, '5.5 GiB'], [9223372036854775807n, '8.0 EiB'],
  ];
  for (const [n, text] of cases) assert.equal(formatSize(n), text, `${n}`);
  assert.equal(formatSize(100n * 1024n * 1024n), '100.0 MiB');
  assert.equal(formatSize(MEMORY_LIMIT), '512.0 MiB');
});

test('a download is named by its base name, in both Content-Disposition forms', () => {
  assert.equal(baseName('../../etc/passwd'), 'passwd');
  assert.equal(baseName('a\\b\\c.txt'), 'c.txt');
  assert.equal(baseName('..'), 'download');
  assert.equal(baseName(''), 'download');
  assert.equal(baseName('bad\u0007name\u202e.txt'), 'bad_name_.txt');
  assert.equal(contentDisposition('report.pdf'), `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`);
  assert.equal(
    contentDisposition('dir/naïve "quote" 100%\\x (1)*.txt'),
    `attachment; filename="x (1)*.txt"; filename*=UTF-8''x%20%281%29%2A.txt`,
  );
  assert.equal(
    contentDisposition('café "☕" 100%.txt'),
    `attachment; filename="caf_ ___ 100_.txt"; filename*=UTF-8''caf%C3%A9%20%22%E2%98%95%22%20100%25.txt`,
  );
  // A lone surrogate (valid JSON, invalid UTF-16) cannot break the header.
  assert.equal(contentDisposition('x\uD800.bin'), `attachment; filename="x_.bin"; filename*=UTF-8''x%EF%BF%BD.bin`);
  assert.doesNotMatch(contentDisposition('a\r\nSet-Cookie: x'), /[\r\n]/);
});

test('tree paths are checked component by component', () => {
  assert.deepEqual(safePath('album/photos/a.jpg'), ['album', 'photos', 'a.jpg']);
  for (const bad of ['../x', 'a/../b', '/abs', 'a//b', 'a/./b', 'a\\b', 'a/\u0000', 'a/ lead', 'a/\uDC00', 'trail/']) {
    assert.throws(() => safePath(bad), /unsafe name/, bad);
  }
  assert.equal(safeComponent('é ☕.txt'), 'é ☕.txt');
  assert.equal(safeComponent('x'.repeat(256)), null);
});

test('a tree is one .zip named after its one top folder', () => {
  const entry = (path, isDir = false) => ({ path, isDir, size: 0n, mtimeNs: 0n });
  assert.equal(zipName([entry('album', true), entry('album/a.txt')]), 'album.zip');
  assert.equal(zipName([entry('album/a.txt'), entry('album/b/c.txt')]), 'album.zip');
  assert.equal(zipName([entry('one.txt'), entry('two.txt')]), 'ferry-files.zip');
  assert.equal(zipName([entry('a/x'), entry('b/y')]), 'ferry-files.zip');
});

test('the plan: the service worker first, then the pickers, then memory up to the limit', () => {
  const file = { kind: 'file', name: 'a.bin', size: 10n };
  const huge = { kind: 'file', name: 'a.bin', size: BigInt(MEMORY_LIMIT) + 1n };
  const tree = { kind: 'tree', size: 3n };
  const entries = [
    { path: 'd', isDir: true, size: 0n, mtimeNs: 0n },
    { path: 'd/x', isDir: false, size: 3n, mtimeNs: 0n },
  ];
  const all = { serviceWorker: true, savePicker: true, folderPicker: true };
  const pickers = { serviceWorker: false, savePicker: true, folderPicker: true };
  const none = { serviceWorker: false, savePicker: false, folderPicker: false };
  assert.equal(plan(file, [], all).method, 'download');
  assert.equal(plan(huge, [], all).method, 'download');
  assert.equal(plan(tree, entries, all).method, 'zip-download');
  assert.match(plan(tree, entries, all).note, /d\.zip/);
  assert.equal(plan(file, [], pickers).method, 'pick-file');
  assert.equal(plan(tree, entries, pickers).method, 'pick-folder');
  assert.equal(plan(file, [], none).method, 'memory');
  assert.match(plan(file, [], none).note, /at most 512\.0 MiB/);
  assert.equal(plan(tree, entries, none).method, 'memory-zip');
  const refused = plan(huge, [], none);
  assert.equal(refused.method, null);
  assert.match(refused.blocked, /larger than this browser can hold \(512\.0 MiB\)/);
  const bigTree = [{ path: 'big', isDir: false, size: BigInt(MEMORY_LIMIT), mtimeNs: 0n }];
  assert.equal(plan({ kind: 'tree', size: BigInt(MEMORY_LIMIT) }, bigTree, none).method, null, 'the .zip adds headers');
  const unsafe = plan(tree, [{ path: '../evil', isDir: false, size: 3n, mtimeNs: 0n }], all);
  assert.equal(unsafe.method, null);
  assert.match(unsafe.blocked, /unsafe name in the offer: \.\.\/evil/);
});

test('only bytes that span their whole buffer and are given up are moved', () => {
  const whole = new Uint8Array([1, 2, 3]);
  assert.equal(movable(whole, true), whole.buffer);
  assert.notEqual(movable(whole, false), whole.buffer);
  const part = whole.subarray(1);
  assert.deepEqual(new Uint8Array(movable(part, true)), new Uint8Array([2, 3]));
});

function collector() {
  const parts = [];
  return {
    parts,
    closed: false,
    write: async (bytes) => { parts.push(Buffer.from(bytes)); },
    async close() { this.closed = true; },
    abort: async () => {},
  };
}

/** Python's zipfile reads the archive back: [name, is_dir, size, date_time, mode, flag_bits, data hex]. */
function readBack(bytes) {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-zip-'));
  const path = join(dir, 't.zip');
  writeFileSync(path, bytes);
  const script = [
    'import json, sys, zipfile',
    'z = zipfile.ZipFile(sys.argv[1])',
    'assert z.testzip() is None',
    'print(json.dumps([[i.filename, i.is_dir(), i.file_size, list(i.date_time), i.external_attr >> 16,',
    '  i.flag_bits, i.compress_type, z.read(i).hex()] for i in z.infolist()]))',
  ].join('\n');
  const run = spawnSync('python3', ['-c', script, path], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout);
}

test('a tree becomes a .zip as its pieces arrive; zipfile reads it back', async () => {
  const mtime = 1_700_000_000n * NS; // 2023-11-14 22:13:20 UTC
  const entries = [
    { path: 'top', isDir: true, size: 0n, mtimeNs: mtime },
    { path: 'top/a.txt', isDir: false, size: 5n, mtimeNs: mtime, executable: false },
    { path: 'top/empty', isDir: false, size: 0n, mtimeNs: mtime, executable: true },
    { path: 'top/sub', isDir: true, size: 0n, mtimeNs: mtime },
    { path: 'top/sub/ü ☕.bin', isDir: false, size: 3n, mtimeNs: mtime },
  ];
  const out = collector();
  const sink = zipSink(entries, out);
  await sink.write(new TextEncoder().encode('he'), 1);
  await sink.write(new TextEncoder().encode('llo'), 1);
  await sink.fileDone(1);
  await sink.fileDone(2);
  await sink.write(new Uint8Array([1, 2, 3]), 4);
  await sink.fileDone(4);
  await sink.close();
  assert.ok(out.closed);
  const bytes = Buffer.concat(out.parts);
  assert.equal(BigInt(bytes.length), zipLength(entries), 'the predicted length is exact');
  const local = new Date(Number(mtime / 1_000_000n));
  const when = [local.getFullYear(), local.getMonth() + 1, local.getDate(), local.getHours(), local.getMinutes(), local.getSeconds()];
  assert.deepEqual(readBack(bytes), [
    ['top/', true, 0, when, 0o40755, 0x808, 0, ''],
    ['top/a.txt', false, 5, when, 0o100644, 0x808, 0, '68656c6c6f'],
    ['top/empty', false, 0, when, 0o100755, 0x808, 0, ''],
    ['top/sub/', true, 0, when, 0o40755, 0x808, 0, ''],
    ['top/sub/ü ☕.bin', false, 3, when, 0o100644, 0x808, 0, '010203'],
  ]);
});

test('the archive takes a piece only once its output took the one before: bounded memory', async () => {
  const entries = [{ path: 'big.bin', isDir: false, size: 100n * 65536n, mtimeNs: 0n }];
  let release = null;
  let written = 0;
  const output = {
    write: () => new Promise((resolve) => { written += 1; release = resolve; }),
    close: async () => {},
    abort: async () => {},
  };
  const sink = zipSink(entries, output);
  let accepted = 0;
  const writes = (async () => {
    for (let i = 0; i < 100; i += 1) {
      await sink.write(new Uint8Array(65536), 0);
      accepted += 1;
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(written, 1, 'one chunk at a time to the output');
  assert.ok(accepted <= 2, `${accepted} pieces taken while the output was stalled`);
  for (let i = 0; i < 400 && accepted < 100; i += 1) {
    release?.();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.equal(accepted, 100);
  await sink.fileDone(0);
  const closing = sink.close();
  for (let i = 0; i < 20; i += 1) {
    release?.();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await closing;
  await writes;
});

test('a failed output fails the next write, and abort fails the output', async () => {
  const entries = [{ path: 'x', isDir: false, size: 10n, mtimeNs: 0n }];
  const sink = zipSink(entries, { write: async () => { throw new Error('disk full'); }, close: async () => {}, abort: async () => {} });
  await assert.rejects(async () => {
    for (let i = 0; i < 10; i += 1) await sink.write(new Uint8Array(1), 0);
  }, /disk full/);
  let aborted = null;
  const other = zipSink(entries, { write: async () => {}, close: async () => {}, abort: async (reason) => { aborted = reason; } });
  await other.abort('the sender went away');
  assert.equal(aborted, 'the sender went away');
  await assert.rejects(other.write(new Uint8Array(1), 0), /the sender went away/);
  assert.throws(() => zipEntries([{ path: 'a/../b', isDir: false, size: 1n, mtimeNs: 0n }]), /unsafe name/);
});

test('which browsers stream downloads through the service worker', () => {
  const nav = (userAgent) => ({ userAgent, serviceWorker: {} });
  const yes = [
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0',
    'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36',
  ];
  const no = [
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/130.0 Mobile/15E148 Safari/604.1',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) EdgiOS/130.0 Mobile/15E148 Safari/605.1.15',
    'Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/130.0 Mobile/15E148 Safari/605.1.15',
  ];
  for (const ua of yes) assert.equal(canStreamDownload(nav(ua)), true, ua);
  for (const ua of no) assert.equal(canStreamDownload(nav(ua)), false, ua);
  assert.equal(canStreamDownload({ userAgent: yes[0] }), false, 'no service worker at all');
});
