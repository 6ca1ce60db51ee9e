import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { InvalidCode } from '../src/core/errors.js';
import { codeRepr, generateCode, parseCode } from '../src/core/codes.js';
import { WORDS } from '../src/core/wordlist.js';
import { vectors } from './helpers.js';

const WORDLIST_TXT = new URL('../../src/ferry/wordlist.txt', import.meta.url);

test('codes: wordlist.js is src/ferry/wordlist.txt, word for word', () => {
  const raw = readFileSync(WORDLIST_TXT);
  assert.equal(createHash('sha256').update(raw).digest('hex'), vectors.codes.wordlist_sha256);
  const fromText = raw.toString('ascii').split('\n').map((w) => w.trim()).filter(Boolean);
  assert.deepEqual([...WORDS], fromText);
  assert.equal(WORDS.length, vectors.codes.word_count);
  assert.equal(new Set(WORDS).size, WORDS.length);
});

test('codes: parsing agrees with Python on every vector, reasons included', () => {
  for (const { input, text, nameplate, error } of vectors.codes.parse) {
    if (error !== undefined) {
      assert.throws(() => parseCode(input), (e) => e instanceof InvalidCode && e.message === error, JSON.stringify(input));
    } else {
      const code = parseCode(input);
      assert.equal(code.text, text);
      assert.equal(code.nameplate, nameplate);
      assert.equal(new TextDecoder().decode(code.password), text);
    }
  }
});

test('codes: generated codes parse back, and a code\'s repr hides its words', () => {
  for (let i = 0; i < 50; i += 1) {
    const code = generateCode(1 + i);
    assert.equal(code.words.length, 3);
    assert.equal(parseCode(code.text).text, code.text);
    assert.equal(codeRepr(code), `Code(nameplate=${1 + i}, words=<3 hidden>)`); // the words never show
  }
  assert.equal(generateCode(7, 3, () => 0).text, `7-${WORDS[0]}-${WORDS[0]}-${WORDS[0]}`);
  assert.throws(() => generateCode(0), RangeError);
  assert.throws(() => generateCode(7, 2), RangeError);
});
