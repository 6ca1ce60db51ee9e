// Streams a tree through the page's .zip writer (src/app/zip.js) without
// keeping its data: prints {length, predicted, pieces: [[offset, hex]]} where
// the pieces are every byte of the archive except the files' data, which is
// all zeros. tests/unit/test_web_zip.py rebuilds the archive as a sparse file
// from them and reads it with Python's zipfile (a ZIP64 archive past 4 GiB
// without 4 GiB in memory or on disk).
//
//   node tools/zip-probe.mjs SIZE [SIZE ...]   one file per SIZE (bytes), in a folder "t"
import { zipLength, zipSink } from '../src/app/zip.js';

const sizes = process.argv.slice(2).map((arg) => BigInt(arg));
const MTIME = 1_700_000_000_000_000_000n;
const entries = [{ path: 't', isDir: true, size: 0n, mtimeNs: MTIME }];
sizes.forEach((size, i) => entries.push({ path: `t/f${i}.bin`, isDir: false, size, mtimeNs: MTIME }));

const zeros = new Uint8Array(1 << 20);
const pieces = [];
let offset = 0n;
const output = {
  write: async (bytes) => {
    if (bytes.buffer !== zeros.buffer) pieces.push([offset.toString(), Buffer.from(bytes).toString('hex')]);
    offset += BigInt(bytes.length);
  },
  close: async () => {},
  abort: async () => {},
};
const sink = zipSink(entries, output);
for (let i = 0; i < sizes.length; i += 1) {
  let left = sizes[i];
  while (left > 0n) {
    const n = left < BigInt(zeros.length) ? Number(left) : zeros.length;
    await sink.write(zeros.subarray(0, n), i + 1);
    left -= BigInt(n);
  }
  await sink.fileDone(i + 1);
}
await sink.close();
process.stdout.write(`${JSON.stringify({ length: offset.toString(), predicted: zipLength(entries).toString(), pieces })}\n`);
