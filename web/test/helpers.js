// Shared by the tests: the vectors the Python side wrote, and hex helpers.
import { readFileSync } from 'node:fs';

export const vectors = JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8'));
export { fromHex, toHex, utf8 } from '../src/core/bytes.js';

/** An entropy function that hands out exactly these bytes, once (as the Python vectors did). */
export function fixedEntropy(hex) {
  let used = false;
  return (n) => {
    if (used || n !== hex.length / 2) throw new Error(`unexpected entropy request of ${n} bytes`);
    used = true;
    return Uint8Array.from(Buffer.from(hex, 'hex'));
  };
}

/** Little-endian hex of a scalar, as spake2's scalar_to_bytes writes it. */
export function scalarHexLE(scalar) {
  const out = [];
  let rest = scalar;
  for (let i = 0; i < 32; i += 1) {
    out.push(Number(rest & 0xffn).toString(16).padStart(2, '0'));
    rest >>= 8n;
  }
  return out.join('');
}
