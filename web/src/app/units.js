// Sizes as the page shows them: binary units, as the command line's
// src/ferry/units.py ("512 B", "4.8 MiB", "1.0 GiB", one decimal from a KiB
// up), so a person comparing the page with the terminal sees one number.

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** One decimal, ties to even (as Python's format of a float). */
function oneDecimal(value) {
  const tenths = value * 10;
  const floor = Math.floor(tenths);
  const rest = tenths - floor;
  const n = rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  return `${Math.floor(n / 10)}.${n % 10}`;
}

/** A byte count (number or BigInt) as units.size() writes it. */
export function formatSize(bytes) {
  const n = Number(bytes);
  if (n < 1024) return `${Math.max(0, Math.trunc(n))} B`;
  let value = n;
  for (const unit of UNITS) {
    value /= 1024;
    if (value < 1023.95 || unit === UNITS[UNITS.length - 1]) return `${oneDecimal(value)} ${unit}`;
  }
  throw new Error('unreachable');
}
