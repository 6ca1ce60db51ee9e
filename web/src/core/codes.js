// Transfer codes: a public nameplate number followed by secret words.
// Mirrors src/ferry/codes.py (the same rules, the same one-line reasons).
//
// Theory of operation. A code reads 7-guitar-orbit-velvet. The nameplate
// (1 to 999999) only tells the relay which two clients belong together;
// the words are the secret, 9 bits each from the 512 words of
// src/ferry/wordlist.txt (wordlist.js is generated from it by
// scripts/web_vectors.py). The canonical text of the whole code is the
// PAKE password. Parsing forgives case, surrounding white space and
// separators (hyphens or spaces, repeated) and is strict about the rest.
// Never log a code's words: codeRepr() shows the nameplate only.

import { InvalidCode } from './errors.js';
import { WORDS } from './wordlist.js';

export const DEFAULT_WORD_COUNT = 3;
export const MIN_WORD_COUNT = 3;
export const MAX_WORD_COUNT = 8;
export const MAX_NAMEPLATE = 999999;

const EXAMPLE = '7-guitar-orbit-velvet';
const SEPARATORS = /[ -]+/;
const SHOWN_WORD_MAX = 12;
const WORD_SET = new Set(WORDS);
// Python's str.strip() on ASCII text: space, \t \n \v \f \r and \x1c-\x1f.
const ASCII_SPACE = /^[\t\n\v\f\r\x1c-\x1f ]+|[\t\n\v\f\r\x1c-\x1f ]+$/g;

/** A parsed or generated code: {nameplate, words, text, password}. */
export function makeCode(nameplate, words) {
  const text = [String(nameplate), ...words].join('-');
  return Object.freeze({ nameplate, words: Object.freeze([...words]), text, password: new TextEncoder().encode(text) });
}

/** What a log may show of a code. */
export function codeRepr(code) {
  return `Code(nameplate=${code.nameplate}, words=<${code.words.length} hidden>)`;
}

function invalid(reason) {
  return new InvalidCode(`invalid code: ${reason}`);
}

/** Parse what a person typed; throws InvalidCode with a one-line reason. */
export function parseCode(input) {
  if (!/^[\x00-\x7f]*$/.test(input)) throw invalid('it contains a character that is not plain ASCII');
  const text = input.replace(ASCII_SPACE, '');
  if (!text) throw invalid(`it is empty (expected something like ${EXAMPLE})`);
  if (/[^\x20-\x7e]/.test(text)) throw invalid('it contains a control character');
  const [number, ...parts] = text.toLowerCase().split(SEPARATORS);
  if (parts.length && !parts[parts.length - 1]) parts.pop(); // a trailing separator is harmless
  if (!/^[0-9]+$/.test(number)) throw invalid(`it must start with a number, like ${EXAMPLE}`);
  const digits = number.replace(/^0+/, ''); // leading zeros are allowed and dropped
  if (digits.length > String(MAX_NAMEPLATE).length || !(Number(digits || '0') >= 1 && Number(digits) <= MAX_NAMEPLATE)) {
    throw invalid(`the number must be between 1 and ${MAX_NAMEPLATE}`);
  }
  if (parts.length < MIN_WORD_COUNT) throw invalid(`expected at least ${MIN_WORD_COUNT} words after the number`);
  if (parts.length > MAX_WORD_COUNT) throw invalid(`expected at most ${MAX_WORD_COUNT} words after the number`);
  for (const word of parts) {
    if (!WORD_SET.has(word)) {
      const shown = word.length <= SHOWN_WORD_MAX ? word : `${word.slice(0, SHOWN_WORD_MAX)}...`;
      throw invalid(`'${shown}' is not a ferry word (check the spelling)`);
    }
  }
  return makeCode(Number(digits), parts);
}

function defaultRandomIndex(n) {
  // 512 words: the low 9 bits of a random 16-bit value are uniform.
  if (n !== 512) throw new RangeError('the word list has 512 words');
  return globalThis.crypto.getRandomValues(new Uint16Array(1))[0] & 511;
}

/** A fresh code for `nameplate` with `wordCount` words, each uniform over the list. */
export function generateCode(nameplate, wordCount = DEFAULT_WORD_COUNT, randomIndex = defaultRandomIndex) {
  if (!Number.isInteger(nameplate) || nameplate < 1 || nameplate > MAX_NAMEPLATE) {
    throw new RangeError(`nameplate must be 1..${MAX_NAMEPLATE}, got ${nameplate}`);
  }
  if (!Number.isInteger(wordCount) || wordCount < MIN_WORD_COUNT || wordCount > MAX_WORD_COUNT) {
    throw new RangeError(`wordCount must be ${MIN_WORD_COUNT}..${MAX_WORD_COUNT}, got ${wordCount}`);
  }
  const words = [];
  for (let i = 0; i < wordCount; i += 1) words.push(WORDS[randomIndex(WORDS.length)]);
  return makeCode(nameplate, words);
}
