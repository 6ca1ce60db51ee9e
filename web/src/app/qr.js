// The QR code of the browser link on the send view.
//
// Theory of operation. uqr (pinned in package-lock.json; a port of Nayuki's
// QR Code generator) makes the module matrix; this module draws it as an SVG
// built with DOM calls: no markup strings and no style attributes, which
// the relay's Content-Security-Policy (style-src 'self') would refuse. The
// modules are one path of unit squares on a white square, so the code is
// dark on light whatever the page's colour scheme, with a quiet zone of
// QUIET_ZONE modules, as ISO/IEC 18004 asks and as ./send --qr draws it.
// The size on screen is the stylesheet's (.qr svg).

import { encode } from 'uqr';

const SVG = 'http://www.w3.org/2000/svg';
export const QUIET_ZONE = 4;

/** The module matrix of a QR code of `text`, quiet zone included (true: dark). */
export function qrMatrix(text) {
  // Level L, raised as far as the size allows: a screen is not scuffed paper.
  return encode(text, { ecc: 'L', boostEcc: true, border: QUIET_ZONE }).data;
}

/** SVG path data for the dark modules: one rectangle per horizontal run, in module units. */
export function darkPath(matrix) {
  const parts = [];
  matrix.forEach((row, y) => {
    for (let x = 0; x < row.length; ) {
      if (!row[x]) {
        x += 1;
        continue;
      }
      let run = 1;
      while (x + run < row.length && row[x + run]) run += 1;
      parts.push(`M${x} ${y}h${run}v1h-${run}z`);
      x += run;
    }
  });
  return parts.join('');
}

/** An <svg> of the QR code of `text`, labelled for assistive technology with `label`. */
export function qrSvg(doc, text, label) {
  const matrix = qrMatrix(text);
  const size = matrix.length;
  const svg = doc.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  const light = doc.createElementNS(SVG, 'rect');
  light.setAttribute('width', String(size));
  light.setAttribute('height', String(size));
  light.setAttribute('fill', '#ffffff');
  const dark = doc.createElementNS(SVG, 'path');
  dark.setAttribute('d', darkPath(matrix));
  dark.setAttribute('fill', '#000000');
  svg.append(light, dark);
  return svg;
}
