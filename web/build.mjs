// Builds the web app the relay serves: web/src/app (and core/, transfer/)
// into one directory of four files, index.html, app.js, app.css, and the
// service worker that streams downloads, sw.js (web/src/sw).
//
//   node build.mjs [OUTDIR]      (default: ../src/ferry/webapp, committed)
//
// esbuild (pinned exactly in package.json and package-lock.json) bundles
// and minifies; the output is deterministic, so tests/unit/test_webapp_bundle.py
// rebuilds into a temporary directory and fails if it differs from what is
// committed. No source maps, no inline script: the page loads app.js and
// app.css from its own origin (the relay's Content-Security-Policy).
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, '..', 'src', 'ferry', 'webapp'));
mkdirSync(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  legalComments: 'eof',
  keepNames: true,
  charset: 'utf8',
  logLevel: 'warning',
  absWorkingDir: here,
};
await build({
  ...common,
  entryPoints: ['src/app/app.js'],
  outfile: join(out, 'app.js'),
  format: 'iife',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  platform: 'browser',
});
await build({
  ...common,
  entryPoints: ['src/sw/sw.js'],
  outfile: join(out, 'sw.js'),
  format: 'iife',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  platform: 'browser',
});
await build({ ...common, entryPoints: ['src/app/style.css'], outfile: join(out, 'app.css'), target: ['chrome109', 'firefox115', 'safari16'] });
copyFileSync(join(here, 'src', 'app', 'index.html'), join(out, 'index.html'));
