// The page: a receive view and a send view over transfer/drive.js.
//
// Theory of operation. The relay serves this page and bridges /ws to its
// rendezvous port; everything ferry-specific happens in core/ and
// transfer/, so this file only wires the DOM: a code from the URL
// fragment (#7-guitar-orbit-velvet: a fragment is never sent to the
// server) or typed; the offer shown with a Save button; files picked,
// dropped or a text typed to send. One transfer at a time. The status line
// (data-testid="status") ends in "done" on success and says what happened
// otherwise; a success also replaces both views with the done view
// (done.js: what moved, where it went, and no code, which is spent).
// Without a secure context (plain http from a host that is not localhost)
// WebCrypto is missing: the page says so and does nothing.

import { parseCode } from '../core/codes.js';
import {
  Cancelled,
  ConnectionLost,
  FerryError,
  InvalidCode,
  RefusedByPeer,
  RelayRefused,
  TimedOut,
  WrongCode,
} from '../core/errors.js';
import { receive, send, shown } from '../transfer/drive.js';
import { filesSource, textSource } from '../transfer/source.js';
import { SENT_WHERE, doneContent, receivedWhere, savedName, showDone } from './done.js';
import { giveUpStreaming, registerWorker } from './download.js';
import { capabilities, openSink, plan } from './save.js';
import { qrSvg } from './qr.js';
import { openSocket, relayUrl } from './socket.js';
import { formatSize } from './units.js';

export { formatSize };

const $ = (id) => document.getElementById(id);
const now = () => performance.now() / 1000;
/** A sending page's connections; a receiving page's read paced by its sink (socket.js). */
const connect = () => openSocket(relayUrl(window.location));
const connectPaced = () => openSocket(relayUrl(window.location), { paced: true });
const SHOWN_ENTRIES = 50;

let busy = false;
let fromLink = false;
let controller = null;
/** The side the done view speaks for ('receiver' or 'sender'), while it is shown. */
let doneSide = null;

function setStatus(text, kind = '') {
  const status = $('status');
  status.textContent = text;
  status.className = kind;
}

function progress(done, total) {
  const bar = $('progress');
  bar.hidden = false;
  bar.value = total > 0n ? Number(done) / Number(total) : 1;
}

/** One line for a failure, as the CLI would say it. */
export function failureText(error, side) {
  if (error instanceof Cancelled) return 'cancelled';
  if (error instanceof WrongCode) {
    return side === 'receiver'
      ? 'failed: wrong code (check the code with the sender)'
      : 'failed: a receiver used a wrong code too many times; start again for a new code';
  }
  if (error instanceof RefusedByPeer || error instanceof RelayRefused || error instanceof TimedOut ||
      error instanceof InvalidCode) {
    return `failed: ${error.message}`;
  }
  if (error instanceof ConnectionLost) return `failed: ${error.message}`;
  if (error instanceof FerryError) return `failed: ${error.message}`;
  return `failed: ${error?.message ?? error}`;
}

/** A transfer starts: the other view goes away until it ends. */
function begin(view) {
  busy = true;
  leaveDone();
  $(view).hidden = false;
  $(view === 'receive' ? 'send' : 'receive').hidden = true;
  controller = new AbortController();
  for (const id of ['receive-button', 'send-text-button', 'file-input', 'folder-input', 'code-input', 'text-input']) {
    $(id).disabled = true;
  }
  $('cancel-button').hidden = false;
  $('progress').hidden = true;
  return controller.signal;
}

function end(view) {
  busy = false;
  $(view === 'receive' ? 'send' : 'receive').hidden = view === 'receive' && fromLink;
  controller = null;
  for (const id of ['receive-button', 'send-text-button', 'file-input', 'folder-input', 'code-input', 'text-input']) {
    $(id).disabled = false;
  }
  $('cancel-button').hidden = true;
  $('offer').hidden = true;
}

/** After a success: the done view instead of both views (their codes are spent). */
function enterDone(side, what, where) {
  doneSide = side;
  $('receive').hidden = true;
  $('send').hidden = true;
  $('progress').hidden = true;
  showDone(document, doneContent(side, what, where));
  $('again-button').focus();
}

function leaveDone() {
  doneSide = null;
  $('done').hidden = true;
  $('text-box').hidden = true;
  $('text-out').textContent = '';
}

/** "Receive another", "Send something", ...: back to the start, ready for `view`. */
function startOver(view) {
  leaveDone();
  fromLink = false;
  $('receive').hidden = false;
  $('send').hidden = false;
  $('progress').hidden = true;
  setStatus('ready');
  if (view === 'receive') {
    $('code-input').value = '';
    $('code-input').focus();
  } else {
    $('file-input').focus();
  }
}

// -- receiving --------------------------------------------------------------

function describeOffer(offer, entries) {
  if (offer.kind === 'tree') {
    const files = entries.filter((entry) => !entry.isDir);
    return `${files.length} file${files.length === 1 ? '' : 's'}, ${formatSize(offer.size)} in all`;
  }
  if (offer.kind === 'stream') return `${shown(offer.name)} (size not known in advance)`;
  return `${shown(offer.name)}, ${formatSize(offer.size)}`;
}

function showOffer(offer, entries) {
  $('offer').hidden = false;
  $('offer-summary').textContent = `Coming: ${describeOffer(offer, entries)}`;
  const list = $('offer-list');
  list.replaceChildren();
  list.hidden = offer.kind !== 'tree';
  for (const entry of entries.filter((e) => !e.isDir).slice(0, SHOWN_ENTRIES)) {
    const item = document.createElement('li');
    item.textContent = `${shown(entry.path)} (${formatSize(entry.size)})`;
    list.append(item);
  }
  if (entries.length > SHOWN_ENTRIES) {
    const item = document.createElement('li');
    item.textContent = `… and ${entries.filter((e) => !e.isDir).length - SHOWN_ENTRIES} more`;
    list.append(item);
  }
}

/**
 * Wait for Save or Decline; resolves to the decision drive.receive() expects.
 * onSaving(method, sink) hears how an accepted offer is being saved.
 */
function decide(offer, entries, signal, onSaving) {
  if (offer.kind === 'text') {
    const parts = [];
    return {
      accept: true,
      sink: {
        write: async (data) => parts.push(data),
        close: async () => {
          const text = new TextDecoder('utf-8', { fatal: false }).decode(await new Blob(parts).arrayBuffer());
          $('text-out').textContent = text;
          $('text-box').hidden = false;
        },
      },
    };
  }
  showOffer(offer, entries);
  const save = $('save-button');
  const note = $('save-note');
  let chosen = plan(offer, entries, capabilities());
  const show = () => {
    note.textContent = chosen.blocked || chosen.note;
    save.disabled = Boolean(chosen.blocked);
    setStatus(chosen.blocked ? 'offered: this browser cannot save it' : 'offered: press Save to receive it');
  };
  show();
  return new Promise((resolve) => {
    const finish = (decision) => {
      save.onclick = null;
      $('decline-button').onclick = null;
      signal.removeEventListener('abort', onCancel);
      $('offer').hidden = true;
      resolve(decision);
    };
    const onCancel = () => finish({ accept: false, reason: 'declined', message: 'the receiver declined' });
    signal.addEventListener('abort', onCancel, { once: true });
    $('decline-button').onclick = onCancel;
    save.onclick = async () => {
      save.disabled = true; // one download per offer, however often it is clicked
      try {
        const sink = await openSink(chosen.method, offer, entries, document);
        onSaving(chosen.method, sink);
        finish({ accept: true, sink });
      } catch (error) {
        if (chosen.method === 'download' || chosen.method === 'zip-download') {
          // The service worker did not start the download: the other ways from now on.
          giveUpStreaming();
          chosen = plan(offer, entries, capabilities());
          show();
          if (!chosen.blocked) note.textContent = `The browser did not start the download (${error.message}). ${chosen.note} Press Save again.`;
          return;
        }
        // The picker was dismissed (AbortError) or refused: the offer stays.
        save.disabled = false;
        note.textContent = error?.name === 'AbortError' ? 'Nothing picked: press Save again, or Decline.' : `Cannot save there: ${error.message}`;
      }
    };
  });
}

async function startReceive(typed) {
  if (busy) return;
  let code;
  try {
    code = parseCode(typed);
  } catch (error) {
    setStatus(failureText(error, 'receiver'), 'failed');
    return;
  }
  $('text-box').hidden = true;
  const signal = begin('receive');
  let offered = null;
  let saving = null;
  let done = null;
  try {
    const result = await receive({
      connect: connectPaced,
      code,
      now,
      signal,
      decide: (offer, entries) => {
        offered = { offer, entries };
        return decide(offer, entries, signal, (method, sink) => { saving = { method, sink }; });
      },
      onStatus: (state, detail = {}) => {
        if (state === 'receiving') {
          const total = detail.offer.size;
          progress(detail.received, total < 0n ? detail.received : total);
          setStatus(`receiving: ${formatSize(detail.received)}${total >= 0n ? ` of ${formatSize(total)}` : ''}`);
        } else if (state !== 'offered') {
          setStatus(state === 'connecting' ? 'connecting to the relay' : state);
        }
      },
    });
    if (result.refused) {
      setStatus(signal.aborted ? 'cancelled' : 'declined', 'failed');
    } else if (result.offer.kind === 'text') {
      setStatus('text received: done', 'done');
      done = ['A text message', receivedWhere(null, '')];
    } else {
      const { offer, entries } = offered;
      setStatus(`received ${describeOffer(offer, entries)}: done`, 'done');
      const name = savedName(saving.method, offer, entries, saving.sink);
      // A stream's size is known now.
      const what = offer.kind === 'stream' ? `${shown(offer.name)}, ${formatSize(result.received)}` : describeOffer(offer, entries);
      done = [what, receivedWhere(saving.method, name)];
    }
  } catch (error) {
    setStatus(failureText(error, 'receiver'), 'failed');
  } finally {
    end('receive');
  }
  if (done) enterDone('receiver', ...done);
}

// -- sending ----------------------------------------------------------------

async function startSend(source, what, title = what) {
  if (busy) return;
  const signal = begin('send');
  // A code from an earlier transfer must never be read as this one's.
  forgetCode();
  let sent = false;
  try {
    await send({
      connect,
      source,
      now,
      signal,
      onCode: (code) => {
        $('code-out').textContent = code.text;
        showLink(`${window.location.origin}/#${code.text}`);
        $('code-box').hidden = false;
      },
      onStatus: (state, detail = {}) => {
        if (state === 'sending') {
          progress(detail.sent, detail.offer.size);
          setStatus(`sending: ${formatSize(detail.sent)} of ${formatSize(detail.offer.size)}`);
        } else if (state === 'waiting for the receiver' && detail.error) {
          const tries = detail.failures ? ` (${detail.failures} of ${detail.attempts} attempts used)` : '';
          setStatus(`${failureText(detail.error, 'sender').replace(/^failed: /, '')}${tries}; waiting for the receiver`);
        } else if (state !== 'done') {
          setStatus(state === 'connecting' ? 'connecting to the relay' : state);
        }
      },
    });
    setStatus(`sent ${what}: done`, 'done');
    sent = true;
  } catch (error) {
    setStatus(failureText(error, 'sender'), 'failed');
  } finally {
    // The code ends with this transfer, whatever its outcome: nothing that
    // invites using it (the code, its link, the QR code) stays on the page.
    forgetCode();
    end('send');
  }
  if (sent) enterDone('sender', title, SENT_WHERE);
}

function forgetCode() {
  $('code-box').hidden = true;
  $('code-out').textContent = '';
  showLink('');
}

/** The link to this page with the code (or none: ''), its Copy button and its QR code. */
function showLink(link) {
  $('link-out').textContent = link;
  $('link-out').href = link || '#';
  $('copy-link-note').textContent = '';
  $('link-actions').hidden = !link;
  $('qr-out').replaceChildren(...(link ? [qrSvg(document, link, 'QR code of the link')] : []));
  $('qr-box').hidden = !link;
}

async function copyLink() {
  const note = $('copy-link-note');
  try {
    await navigator.clipboard.writeText($('link-out').textContent);
    note.textContent = 'copied';
  } catch {
    note.textContent = 'could not copy: select the link and copy it by hand';
  }
}

function sendFiles(fileList, folder) {
  const files = Array.from(fileList, (file) => ({
    path: folder && file.webkitRelativePath ? file.webkitRelativePath : file.name,
    blob: file,
  }));
  if (!files.length) return;
  const source = filesSource(files);
  const what = files.length === 1 ? `${files[0].path} (${formatSize(files[0].blob.size)})` : `${files.length} files (${formatSize(source.offer.size)})`;
  startSend(source, what);
}

// -- start ------------------------------------------------------------------

function init() {
  if (!window.isSecureContext || !globalThis.crypto?.subtle) {
    $('insecure').hidden = false;
    $('receive').hidden = true;
    $('send').hidden = true;
    setStatus('not available over plain http: nothing was done', 'failed');
    return;
  }
  $('code-form').addEventListener('submit', (event) => {
    event.preventDefault();
    startReceive($('code-input').value);
  });
  $('file-input').addEventListener('change', (event) => {
    sendFiles(event.target.files, false);
    event.target.value = '';
  });
  $('folder-input').addEventListener('change', (event) => {
    sendFiles(event.target.files, true);
    event.target.value = '';
  });
  $('send-text-button').addEventListener('click', () => {
    const text = $('text-input').value;
    if (!text) {
      setStatus('type a text to send first', 'failed');
      return;
    }
    startSend(textSource(text), 'a text', 'A text message');
  });
  $('copy-button').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('text-out').textContent);
      setStatus('text copied to the clipboard: done', 'done');
    } catch {
      setStatus('could not copy: select the text and copy it by hand', 'failed');
    }
  });
  $('copy-link-button').addEventListener('click', copyLink);
  $('again-button').addEventListener('click', () => startOver(doneSide === 'sender' ? 'send' : 'receive'));
  $('other-button').addEventListener('click', () => startOver(doneSide === 'sender' ? 'receive' : 'send'));
  $('cancel-button').addEventListener('click', () => controller?.abort());
  const drop = $('drop');
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    if (!busy) sendFiles(event.dataTransfer.files, false);
  });
  window.addEventListener('beforeunload', (event) => {
    if (busy) event.preventDefault();
  });
  window.addEventListener('hashchange', fromFragment);
  registerWorker();
  fromFragment();
}

/** A link with a code (#7-guitar-orbit-velvet) receives at once, also when pasted into this tab. */
function fromFragment() {
  let fragment = '';
  try {
    fragment = decodeURIComponent(window.location.hash.replace(/^#/, ''));
  } catch {
    fragment = window.location.hash.replace(/^#/, '');
  }
  if (!fragment || busy) return;
  $('code-input').value = fragment;
  fromLink = true;
  $('send').hidden = true;
  // The code stays in the page only: take it out of the address bar and history.
  window.history.replaceState(null, '', window.location.pathname);
  startReceive(fragment);
}

init();
