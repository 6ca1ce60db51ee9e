// The page's done view (app/done.js): what moved, where it went, no code.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SENT_WHERE, doneContent, receivedWhere, savedName } from '../src/app/done.js';

const FILE = { kind: 'file', name: 'clips/holiday\u0007.mp4', size: 3n };
const TREE = [
  { path: 'album/a.jpg', size: 1n, isDir: false },
  { path: 'album/b.jpg', size: 2n, isDir: false },
];

test('savedName is the name the person finds: the download, the zip, or what they picked', () => {
  assert.equal(savedName('download', FILE, []), 'holiday_.mp4');
  assert.equal(savedName('memory', FILE, []), 'holiday_.mp4');
  assert.equal(savedName('zip-download', { kind: 'tree' }, TREE), 'album.zip');
  assert.equal(savedName('memory-zip', { kind: 'tree' }, TREE), 'album.zip');
  assert.equal(savedName('pick-file', FILE, [], { name: 'mine.mp4' }), 'mine.mp4');
  assert.equal(savedName('pick-folder', { kind: 'tree' }, TREE, { name: 'Pictures' }), 'Pictures');
  assert.equal(savedName('pick-file', FILE, [], {}), '');
});

test('receivedWhere names the place for every way save.js saves', () => {
  const cases = {
    download: 'Your browser saved it as a download, x.bin, in its downloads folder.',
    'zip-download': 'Your browser saved the files as one download, x.bin, in its downloads folder.',
    'pick-file': 'It was written to x.bin, the file you picked.',
    'pick-folder': 'The files were written into x.bin, the folder you picked.',
    memory: 'Your browser was handed it as a download, x.bin.',
    'memory-zip': 'Your browser was handed the files as one download, x.bin.',
  };
  for (const [method, text] of Object.entries(cases)) assert.equal(receivedWhere(method, 'x.bin'), text, method);
  assert.equal(receivedWhere('pick-file', ''), 'It was written to the file you picked.');
  assert.equal(receivedWhere('pick-folder', ''), 'The files were written into the folder you picked.');
  assert.equal(receivedWhere(null, ''), 'It is shown below and was not saved anywhere: copy it before you leave the page.');
});

test('doneContent offers the same again and the other side, per side', () => {
  assert.deepEqual(doneContent('receiver', 'a.bin, 1 B', 'there'), {
    title: 'Received', what: 'a.bin, 1 B', where: 'there', again: 'Receive another', other: 'Send something',
  });
  assert.deepEqual(doneContent('sender', 'a.bin (1 B)', SENT_WHERE), {
    title: 'Sent', what: 'a.bin (1 B)', where: SENT_WHERE, again: 'Send another', other: 'Receive something',
  });
});
