import assert from 'node:assert/strict';
import { test } from 'node:test';

import { JsonFloat, JsonSyntaxError, MAX_DEPTH, dumps, parse } from '../src/core/json.js';

/** JSON.parse's answer with every integer as a BigInt, to compare with parse(). */
function reference(text) {
  const convert = (v) => {
    if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
    if (Array.isArray(v)) return v.map(convert);
    if (v !== null && typeof v === 'object') {
      const out = Object.create(null);
      for (const [k, x] of Object.entries(v)) out[k] = convert(x);
      return out;
    }
    return v;
  };
  return convert(JSON.parse(text));
}

test('json: parses what JSON.parse parses, integers as BigInt', () => {
  const docs = [
    '{"kind":"file","name":"a.mp4","size":1234}',
    ' { "a" : [ 1 , -2 , 0 , true , false , null , "x" ] , "b" : { } , "c" : [ ] } ',
    '"\\u00e9\\n\\t\\"\\\\\\/\\b\\f\\r\\ud83d\\udea2"',
    '[[[["deep"]]]]',
    '{"dup":1,"dup":2}',
    '"ünï 🚢"',
  ];
  for (const doc of docs) assert.deepEqual(parse(doc), reference(doc), doc);
});

test('json: integers past 2^53 are exact, numbers with a fraction or exponent are floats', () => {
  assert.equal(parse('9223372036854775807'), 9223372036854775807n);
  assert.equal(parse('-9223372036854775809'), -9223372036854775809n);
  assert.equal(parse('1700000000123456789'), 1700000000123456789n);
  for (const text of ['1.0', '1e3', '-0.5', '2E-2']) {
    const value = parse(text);
    assert.ok(value instanceof JsonFloat, text);
    assert.equal(value.text, text);
  }
});

test('json: garbage is a JsonSyntaxError', () => {
  const bad = ['', '{', '{"a":}', '[1,]', '{"a":1,}', '01', '1.', '.5', '+1', 'NaN', 'Infinity', 'tru',
    '"\u0001"', '"\\x41"', '"\\u12"', '"open', '{a:1}', '1 2', "'x'", '\ufeff{}'];
  for (const text of bad) assert.throws(() => parse(text), JsonSyntaxError, JSON.stringify(text));
  assert.throws(() => parse('['.repeat(MAX_DEPTH + 2) + ']'.repeat(MAX_DEPTH + 2)), /nested too deeply/);
  assert.doesNotThrow(() => parse('['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH)));
});

test('json: dumps writes compact JSON, BigInts exact, lone surrogates as ?', () => {
  assert.equal(dumps({ a: 1n << 62n, b: [true, null, 'x"\n\u0001'], c: {} }), '{"a":4611686018427387904,"b":[true,null,"x\\"\\n\\u0001"],"c":{}}');
  assert.equal(dumps('a\ud800b\udc00c\ud83d\udea2'), '"a?b?c\ud83d\udea2"');
  assert.throws(() => dumps(0.5), TypeError);
  assert.throws(() => dumps(2 ** 53), TypeError);
});

test('json: dumps then parse gives the value back, for many random values', () => {
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const chars = ['a', 'é', '"', '\\', '\n', '\u0000', '🚢', '\u2028', ' ', '/'];
  const value = (depth) => {
    switch (rand(depth > 3 ? 4 : 6)) {
      case 0: return BigInt(rand(1000)) * (rand(2) ? 1n : -1n) * 10n ** BigInt(rand(17));
      case 1: return Array.from({ length: rand(6) }, () => chars[rand(chars.length)]).join('');
      case 2: return [true, false, null][rand(3)];
      case 3: return `k${rand(10)}`;
      case 4: return Array.from({ length: rand(4) }, () => value(depth + 1));
      default: {
        const out = Object.create(null);
        for (let i = rand(4); i > 0; i -= 1) out[`k${rand(5)}`] = value(depth + 1);
        return out;
      }
    }
  };
  for (let i = 0; i < 500; i += 1) {
    const v = value(0);
    assert.deepEqual(parse(dumps(v)), v);
  }
});
