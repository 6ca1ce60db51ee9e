import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Cancelled, FerryError } from '../src/core/errors.js';
import { REASONS } from '../src/core/messages.js';
import { abortFor } from '../src/transfer/drive.js';
import { vectors } from './helpers.js';

test('reasons: the ANSWER/ABORT reasons are Python\'s messages.REASON_* list', () => {
  assert.deepEqual([...REASONS].sort(), vectors.messages.reasons);
});

test('abortFor: a reason from the list, never the error\'s own message (a local path)', () => {
  const full = Object.assign(new Error('/home/ann/Downloads/a.bin: quota'), { name: 'QuotaExceededError' });
  const errors = [new Error('cannot read /home/ann/secret/a.bin'), new FerryError('C:\\Users\\ann\\a.bin'), full, 'oops'];
  for (const role of ['sender', 'receiver']) {
    for (const error of errors) {
      const { reason, message } = abortFor(error, role);
      assert.ok(REASONS.includes(reason), reason);
      assert.ok(!/ann|oops/.test(message), message);
      assert.ok(message.startsWith(`the ${role} `), message);
    }
  }
  assert.equal(abortFor(full, 'receiver').reason, 'no-space');
  assert.equal(abortFor(full, 'sender').reason, 'local-error');
  assert.deepEqual(abortFor(new Cancelled(), 'sender'), { reason: 'local-error', message: 'the sender cancelled' });
});

test('abortFor: an error with a sentence written for the peer says it, nothing else', () => {
  const cancelled = Object.assign(new Error('/home/ann/a.bin'), { peerText: 'the download was cancelled in the browser' });
  assert.deepEqual(abortFor(cancelled, 'receiver'), {
    reason: 'local-error',
    message: 'the receiver failed: the download was cancelled in the browser',
  });
});
