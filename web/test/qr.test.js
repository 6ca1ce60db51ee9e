// The page's QR code: the matrix uqr makes and the SVG path drawn from it.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { QUIET_ZONE, darkPath, qrMatrix } from '../src/app/qr.js';

const LINK = 'https://relay.example:9021/#7-guitar-orbit-velvet';

test('darkPath draws one rectangle per horizontal run of dark modules', () => {
  const matrix = [
    [true, true, false, true],
    [false, false, false, false],
    [false, true, true, true],
  ];
  assert.equal(darkPath(matrix), 'M0 0h2v1h-2zM3 0h1v1h-1zM1 2h3v1h-3z');
});

test('qrMatrix is square with a light quiet zone of four modules on every side', () => {
  const matrix = qrMatrix(LINK);
  const size = matrix.length;
  assert.equal(QUIET_ZONE, 4);
  assert.ok(matrix.every((row) => row.length === size));
  for (let i = 0; i < QUIET_ZONE; i += 1) {
    assert.ok(!matrix[i].some(Boolean) && !matrix[size - 1 - i].some(Boolean));
    assert.ok(!matrix.some((row) => row[i] || row[size - 1 - i]));
  }
  assert.ok(matrix[QUIET_ZONE][QUIET_ZONE], 'the finder pattern starts right after it');
  // A version 3 code (29 modules) holds this link at level L: 37 with the quiet zone.
  assert.equal(size, 29 + 2 * QUIET_ZONE);
});

test('darkPath covers exactly the dark modules of a real code', () => {
  const matrix = qrMatrix(LINK);
  const drawn = matrix.map((row) => row.map(() => false));
  for (const [, x, y, run] of darkPath(matrix).matchAll(/M(\d+) (\d+)h(\d+)v1h-\d+z/g)) {
    for (let i = 0; i < Number(run); i += 1) drawn[Number(y)][Number(x) + i] = true;
  }
  assert.deepEqual(drawn, matrix);
});
