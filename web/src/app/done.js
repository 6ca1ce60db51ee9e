// The view after a transfer that succeeded: what moved, where it went, and
// the way to the next one.
//
// Theory of operation. A code is good for one transfer, so the done view
// shows none: not the sender's code, its link or its QR code, nor the code
// the receiver typed or opened. It says what was received or sent (as the
// offer described it), where a received file went (which depends on how
// save.js saved it), and offers the next step: receive another, or send.
// The texts are pure functions of the transfer; showDone() only fills the
// view's elements (index.html, id="done").

import { baseName, zipName } from './names.js';

/**
 * The name a received offer was saved under, as the person will find it: the
 * download's name, or the file or folder they picked (the sink's `name`,
 * when the browser gave one).
 */
export function savedName(method, offer, entries, sink = null) {
  switch (method) {
    case 'zip-download':
    case 'memory-zip':
      return zipName(entries);
    case 'pick-file':
    case 'pick-folder':
      return sink?.name ? baseName(sink.name) : '';
    default:
      return baseName(offer.name);
  }
}

/** One sentence: where a received offer went, for save.js's method and the saved name. */
export function receivedWhere(method, name) {
  switch (method) {
    case 'download':
      return `Your browser saved it as a download, ${name}, in its downloads folder.`;
    case 'zip-download':
      return `Your browser saved the files as one download, ${name}, in its downloads folder.`;
    case 'pick-file':
      return name ? `It was written to ${name}, the file you picked.` : 'It was written to the file you picked.';
    case 'pick-folder':
      return name ? `The files were written into ${name}, the folder you picked.` : 'The files were written into the folder you picked.';
    case 'memory':
      return `Your browser was handed it as a download, ${name}.`;
    case 'memory-zip':
      return `Your browser was handed the files as one download, ${name}.`;
    default:
      return 'It is shown below and was not saved anywhere: copy it before you leave the page.';
  }
}

/**
 * The done view's content for a side ('receiver' or 'sender'): {title, what,
 * where, again, other} (again: the button that repeats what was done; other:
 * the one that switches to the other side).
 */
export function doneContent(side, what, where) {
  return side === 'receiver'
    ? { title: 'Received', what, where, again: 'Receive another', other: 'Send something' }
    : { title: 'Sent', what, where, again: 'Send another', other: 'Receive something' };
}

/** The receiver's acknowledgement, in the sender's words. */
export const SENT_WHERE = 'The receiver has it: their side confirmed that every byte arrived intact.';

/** Fill and show the done view. */
export function showDone(document, content) {
  const $ = (id) => document.getElementById(id);
  $('done-title').textContent = content.title;
  $('done-what').textContent = content.what;
  $('done-where').textContent = content.where;
  $('again-button').textContent = content.again;
  $('other-button').textContent = content.other;
  $('done').hidden = false;
}
