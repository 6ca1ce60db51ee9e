// JSON for the control records, exact for 64-bit integers.
//
// Theory of operation. ferry's JSON carries 64-bit integers: sizes up to
// 2^63-1 bytes and mtimes in nanoseconds (about 1.7e18 today), past what a
// JavaScript number holds exactly (2^53). JSON.parse would round them, and
// cannot tell 1000 from 1e3 or 1000.0, which the Python side refuses where
// it expects an integer. So the core reads JSON with this small strict
// parser: every integer becomes a BigInt, every number with a fraction or
// an exponent a JsonFloat (so a field check can refuse it as Python's does),
// and nesting deeper than MAX_DEPTH is an error, as it is (RecursionError)
// on the Python side. dumps() writes what Python's
// json.dumps(obj, ensure_ascii=False, separators=(",", ":")) writes, so both
// sides encode the same bytes (web/test/vectors.json pins it).

export const MAX_DEPTH = 500;

/** A JSON number that is not an integer (never a valid count or size). */
export class JsonFloat {
  constructor(text) {
    this.text = text;
  }
}

export class JsonSyntaxError extends Error {}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const SIMPLE_CHARS = /[^"\\\u0000-\u001f]*/y;

/** Parse JSON text; integers come back as BigInt. Throws JsonSyntaxError. */
export function parse(text) {
  let at = 0;
  const fail = (what) => {
    throw new JsonSyntaxError(`${what} at ${at}`);
  };
  const skip = () => {
    while (at < text.length && WS.has(text.charCodeAt(at))) at += 1;
  };
  const value = (depth) => {
    if (depth > MAX_DEPTH) fail('nested too deeply');
    skip();
    const ch = text[at];
    if (ch === '{') return object(depth);
    if (ch === '[') return array(depth);
    if (ch === '"') return string();
    if (text.startsWith('true', at)) return (at += 4), true;
    if (text.startsWith('false', at)) return (at += 5), false;
    if (text.startsWith('null', at)) return (at += 4), null;
    return number();
  };
  const number = () => {
    NUMBER.lastIndex = at;
    const match = NUMBER.exec(text);
    if (match === null) fail('unexpected character');
    at = NUMBER.lastIndex;
    return match[1] === undefined && match[2] === undefined ? BigInt(match[0]) : new JsonFloat(match[0]);
  };
  const string = () => {
    at += 1; // the opening quote
    let out = '';
    for (;;) {
      SIMPLE_CHARS.lastIndex = at;
      out += SIMPLE_CHARS.exec(text)[0];
      at = SIMPLE_CHARS.lastIndex;
      const ch = text[at];
      if (ch === '"') {
        at += 1;
        return out;
      }
      if (ch !== '\\') fail(ch === undefined ? 'unterminated string' : 'control character in string');
      const esc = text[at + 1];
      at += 2;
      const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }[esc];
      if (simple !== undefined) {
        out += simple;
      } else if (esc === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(at, at + 4))) {
        out += String.fromCharCode(parseInt(text.slice(at, at + 4), 16));
        at += 4;
      } else {
        fail('bad escape');
      }
    }
  };
  const array = (depth) => {
    at += 1;
    const out = [];
    skip();
    if (text[at] === ']') return (at += 1), out;
    for (;;) {
      out.push(value(depth + 1));
      skip();
      if (text[at] === ']') return (at += 1), out;
      if (text[at] !== ',') fail('expected , or ]');
      at += 1;
    }
  };
  const object = (depth) => {
    at += 1;
    const out = Object.create(null);
    skip();
    if (text[at] === '}') return (at += 1), out;
    for (;;) {
      skip();
      if (text[at] !== '"') fail('expected a key');
      const key = string();
      skip();
      if (text[at] !== ':') fail('expected :');
      at += 1;
      out[key] = value(depth + 1);
      skip();
      if (text[at] === '}') return (at += 1), out;
      if (text[at] !== ',') fail('expected , or }');
      at += 1;
    }
  };
  const result = value(0);
  skip();
  if (at !== text.length) fail('extra data');
  return result;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Compact JSON, as Python's json.dumps(ensure_ascii=False, separators=(",", ":"))
 * followed by .encode("utf-8", "replace"): a lone surrogate becomes "?".
 * Integers may be numbers or BigInts; objects keep their insertion order.
 */
export function dumps(value) {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'number':
      if (!Number.isSafeInteger(value)) throw new TypeError('only exact integers are written');
      return String(value);
    case 'string':
      return JSON.stringify(value.replace(LONE_SURROGATE, '?'));
    default:
      break;
  }
  if (Array.isArray(value)) return `[${value.map(dumps).join(',')}]`;
  if (typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${dumps(k)}:${dumps(v)}`)
      .join(',')}}`;
  }
  throw new TypeError(`cannot write ${typeof value} as JSON`);
}
