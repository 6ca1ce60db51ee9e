// The drivers of a browser (or Node) transfer: the rendezvous with the relay
// and a session (core/session.js) over connections the caller opens.
//
// Theory of operation. Everything about the protocol is in core/; this
// module only moves bytes and waits. A connection is any object with
//     write(bytes) -> Promise   (resolves once the bytes are handed over;
//                                the caller's transport applies backpressure)
//     read() -> Promise<Uint8Array | null>   (null: the connection ended)
//     close()
// so the page gives it a WebSocket (app/socket.js) and the tests a TCP
// socket (tools/node-client.mjs), both speaking the byte stream a CLI
// client speaks: a rendezvous line, then records. `now()` is seconds on a
// monotonic clock; the only timers here wait for a session's deadline and
// for a retry.
//
// receive(): FERRY 1 RECV <n> + our PAKE record on one connection; the
// relay's `retry` is tried again every second for 30 s and `claimed` a few
// times over 1.5 s (as the CLI does); then the session: the offer goes to
// decide(), which accepts with a sink or refuses; the data goes to the
// sink; the ACK once the sink has closed.
//
// send(): a control connection, FERRY 1 SEND STANDBY (plain SEND when the
// relay predates standby), PING answered with PONG; each TICKET (or
// INCOMING) opens a data connection, FERRY 1 JOIN <n> <ticket> + a fresh
// session's PAKE record, which waits parked for a receiver. A wrong code or
// a refusal costs one of `attempts` and the code stays valid; a receiver
// that leaves before the key exchange costs nothing.

import { concat } from '../core/bytes.js';
import { generateCode } from '../core/codes.js';
import {
  Cancelled,
  ConnectionLost,
  FerryError,
  RefusedByPeer,
  RelayRefused,
  RemoteProtocolError,
  WrongCode,
} from '../core/errors.js';
import { REASON_LOCAL_ERROR, REASON_NO_SPACE } from '../core/messages.js';
import { LineBuffer, joinRequest, parseRelayLine, pong, receiveRequest, sendRequest } from '../core/rendezvous.js';
import { RECORD_SIZE, ReceiverSession, SenderSession, State } from '../core/session.js';

const RETRY_FOR = 30;
/** Seconds between progress reports while data flows (each one touches the page). */
const REPORT_EVERY = 0.1;
/**
 * DATA records sealed before one write: WebCrypto seals them concurrently and
 * they go out as one piece (the connection's write still applies backpressure).
 */
const RECORDS_PER_WRITE = 8;
const CLAIMED_RETRIES = 3;
const CLAIMED_PAUSE = 0.5;
export const DEFAULT_ATTEMPTS = 3;

const REFUSALS = {
  'unknown-nameplate': 'unknown code: no sender is waiting with nameplate {n} (check the number, and that the sender is still running)',
  claimed: 'code already in use: another receiver is using nameplate {n}',
  retry: 'another receiver is still pairing on nameplate {n}; try again',
  busy: 'relay busy, try again later',
  version: 'the relay speaks another protocol version; reload the page',
  'too-many-attempts': 'too many attempts on nameplate {n}; ask for a new code',
  timeout: 'timed out at the relay ({text})',
  'sender-gone': 'the sender went away',
  'shutting-down': 'the relay is shutting down, try again later',
  'rate-limited': 'too many attempts from this address; wait a minute and try again',
  'too-many-connections': 'relay busy: too many connections from this address, try again later',
  unavailable: 'the relay cannot take this request right now ({text}); try again in a moment',
  'bad-request': 'the relay rejected the request as malformed ({text})',
  'stale-ticket': 'the receiver that data connection was for is gone',
};

/** Peer-chosen text, safe to show on one line: control and format characters become "?". */
export function shown(text) {
  return String(text).replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, '?');
}

/**
 * The ABORT {reason, message} a side (`role`: 'sender' or 'receiver') sends its peer
 * when `error` stops it mid-transfer, by the command-line client's rule (its
 * client/peer.py abort_for): the reason is one of messages.REASONS (`no-space` for a
 * full disk, `local-error` for anything else, a cancel included), and the text never
 * repeats the error's own message, which can name a local file or folder. An error
 * may carry `peerText`, a fixed sentence written for the peer (e.g. the download was
 * cancelled in the browser): that is said instead of the generic one.
 */
export function abortFor(error, role) {
  if (error instanceof Cancelled) return { reason: REASON_LOCAL_ERROR, message: `the ${role} cancelled` };
  if (typeof error?.peerText === 'string') {
    return { reason: REASON_LOCAL_ERROR, message: `the ${role} failed: ${shown(error.peerText)}` };
  }
  const full = role === 'receiver' && error?.name === 'QuotaExceededError';
  const verb = role === 'receiver' ? 'store' : 'send';
  const why = full ? 'the disk is full' : 'it failed on its side';
  return { reason: full ? REASON_NO_SPACE : REASON_LOCAL_ERROR, message: `the ${role} could not ${verb} what was offered: ${why}` };
}

/** Our own sentence for a relay's refusal (its text only where the CLI shows it too). */
export function refusalError(reason, text, nameplate) {
  const template = REFUSALS[reason];
  if (template === undefined) return new RelayRefused(reason, 'relay refused (unknown reason)');
  const message = template.replace('{n}', String(nameplate ?? '')).replace('{text}', shown(text || 'no detail'));
  return new RelayRefused(reason, message);
}

const TIMED_OUT = Symbol('timed out');
const CANCELLED = Symbol('cancelled');

/** Reads from a connection with an optional deadline, never losing a read in flight. */
class Reader {
  constructor(conn, now, signal) {
    this.conn = conn;
    this.now = now;
    this._inflight = null;
    this._cancelled = new Promise((resolve) => {
      if (signal?.aborted) resolve(CANCELLED);
      signal?.addEventListener('abort', () => resolve(CANCELLED), { once: true });
    });
  }

  /**
   * The next bytes, null when the connection ended, TIMED_OUT past
   * `deadline` (seconds), CANCELLED once the signal fired, or what `also`
   * resolves to if it settles first (a read in flight is kept for the next call).
   */
  async read(deadline = null, also = null) {
    if (this._inflight === null) this._inflight = this.conn.read();
    let timer;
    const racers = [this._inflight, this._cancelled];
    if (also !== null) racers.push(also);
    if (deadline !== null) {
      const ms = Math.max(0, (deadline - this.now()) * 1000);
      racers.push(new Promise((resolve) => { timer = setTimeout(() => resolve(TIMED_OUT), ms); }));
    }
    try {
      const result = await Promise.race(racers);
      if (result !== TIMED_OUT && result !== CANCELLED && !(also !== null && result?.decided)) this._inflight = null;
      return result;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Read relay lines until PAIRED (returns the bytes after it) or a refusal (throws). */
async function untilPaired(reader, lines, nameplate, onLine = () => {}) {
  for (;;) {
    let line;
    while ((line = lines.nextLine()) !== null) {
      const message = parseRelayLine(line);
      if (message.kind === 'paired') return lines.takeRest();
      if (message.kind === 'error') throw refusalError(message.reason, message.text, nameplate);
      await onLine(message);
    }
    const data = await reader.read();
    if (data === CANCELLED) throw new Cancelled();
    if (data === null) throw new ConnectionLost('the relay closed the connection');
    lines.receiveData(data);
  }
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

function checkCancel(signal) {
  if (signal?.aborted) throw new Cancelled();
}

/**
 * Run a session after PAIRED: feed it what arrives, flush what it produces,
 * hand each event to onEvent (which may return a promise); returns when
 * onEvent returns 'stop'. onEvent may instead return {wait, apply}: a local
 * decision (the promise `wait`) during which the connection is still read,
 * so the peer leaving or sending ABORT ends it; apply(value) runs once it
 * settles and may return 'stop'. (Not `then`: an object with a then method
 * is a thenable, which `await` would call.) Deadlines from the session; cancellation
 * from signal.
 */
async function converse(session, conn, reader, now, rest, onEvent, signal) {
  session.paired(now());
  session.receiveData(rest, now());
  const flush = async () => {
    const out = await session.dataToSend();
    if (out.length) {
      await conn.write(out);
      session.wrote(now());
    }
  };
  const cancel = async () => {
    const { reason, message } = abortFor(new Cancelled(), session.role);
    session.abort(reason, message, now());
    await flush().catch(() => {});
    throw new Cancelled();
  };
  let waiting = null; // a local decision in progress: {promise, apply}
  for (;;) {
    if (signal?.aborted && waiting === null) await cancel();
    const event = await session.nextEvent();
    if (event !== null) {
      if (event.type === 'peer-aborted') {
        const { reason, message } = event.abort;
        throw new RefusedByPeer(`the ${session.peer} gave up: ${shown(message || reason)}`, reason);
      }
      let outcome;
      try {
        outcome = await onEvent(event);
      } catch (error) {
        // Our own failure (a file that cannot be written, a source that cannot be
        // read): the peer is told, unless the session is already over.
        if (session.state !== State.DONE && session.state !== State.FAILED && !(error instanceof Cancelled)) {
          const { reason, message } = abortFor(error, session.role);
          session.abort(reason, message, now());
          await flush().catch(() => {});
        }
        if (error instanceof Cancelled) await cancel();
        throw error;
      }
      if (outcome === 'stop') {
        await flush();
        return;
      }
      if (outcome?.wait) {
        waiting = {
          promise: Promise.resolve(outcome.wait).then(
            (value) => ({ decided: true, value }),
            (error) => ({ decided: true, error }),
          ),
          apply: outcome.apply,
        };
      }
      await flush();
      continue;
    }
    await flush();
    if (session.state === State.DONE) return;
    const data = await reader.read(session.deadline, waiting?.promise ?? null);
    if (data?.decided) {
      const { apply } = waiting;
      waiting = null;
      if (data.error) throw data.error;
      if ((await apply(data.value)) === 'stop') {
        await flush();
        return;
      }
      continue;
    }
    if (data === CANCELLED) await cancel();
    if (data === TIMED_OUT) {
      const error = session.expire(now());
      if (error) throw error;
      continue;
    }
    if (data === null) {
      if (session.state === State.KEY_EXCHANGE) throw new ConnectionLost(`the ${session.peer} left before the key exchange`);
      throw new ConnectionLost(`the ${session.peer} went away (connection lost)`);
    }
    session.receiveData(data, now());
  }
}

/**
 * Receive with `code` (core/codes.js parseCode). decide(offer, entries)
 * resolves to {accept: true, sink} or {accept: false, reason, message};
 * a sink has write(data, index) and close() (and fileDone(index) for a
 * tree). onStatus(text, detail) reports progress. Resolves with
 * {offer, entries, received} once the ACK is out; throws a FerryError.
 */
export async function receive({ connect, code, decide, now, onStatus = () => {}, signal, sessionOptions = {} }) {
  const started = now();
  let claimed = 0;
  for (;;) {
    checkCancel(signal);
    onStatus('connecting');
    const conn = await connect();
    const reader = new Reader(conn, now, signal);
    const session = new ReceiverSession(code.password, sessionOptions);
    try {
      await conn.write(concat(receiveRequest(code.nameplate), session.firstFlight()));
      onStatus('waiting for the sender');
      const rest = await untilPaired(reader, new LineBuffer(), code.nameplate);
      return await receiveSession(session, conn, reader, now, rest, decide, onStatus, signal);
    } catch (error) {
      if (error instanceof RelayRefused && error.reason === 'retry' && now() - started < RETRY_FOR) {
        await sleep(1);
        continue;
      }
      if (error instanceof RelayRefused && error.reason === 'claimed' && claimed < CLAIMED_RETRIES) {
        claimed += 1;
        await sleep(CLAIMED_PAUSE);
        continue;
      }
      throw error;
    } finally {
      conn.close();
    }
  }
}

async function receiveSession(session, conn, reader, now, rest, decide, onStatus, signal) {
  let lastReport = -Infinity;
  let sink = null;
  let offer = null;
  let entries = [];
  let closed = false;
  try {
    await converse(session, conn, reader, now, rest, async (event) => {
      switch (event.type) {
        case 'keyed':
          onStatus('checking the code');
          return null;
        case 'confirmed':
          onStatus('waiting for the offer');
          return null;
        case 'offer': {
          ({ offer, entries } = event);
          onStatus('offered', { offer, entries });
          // The person decides while the connection is still read (as the CLI's
          // --ask): the sender leaving or sending ABORT ends the decision.
          return {
            wait: decide(offer, entries),
            apply: (decision) => {
              if (!decision.accept) {
                session.refuse(decision.reason, decision.message ?? '', now());
                return 'stop';
              }
              sink = decision.sink;
              session.accept(now());
              onStatus('receiving', { received: 0n, offer });
              return null;
            },
          };
        }
        case 'data':
        case 'file-data':
          if (event.data.length) await sink.write(event.data, event.index ?? 0);
          if (event.type === 'file-data' && event.done && sink.fileDone) await sink.fileDone(event.index);
          if (now() - lastReport >= REPORT_EVERY) {
            lastReport = now();
            onStatus('receiving', { received: session.received, offer });
          }
          if (event.type === 'data' && event.final) return finish();
          return null;
        case 'all-received':
          return finish();
        default:
          return null;
      }
    }, signal);
  } catch (error) {
    if (sink !== null && !closed) await sink.abort?.().catch?.(() => {});
    throw error;
  }

  async function finish() {
    onStatus('receiving', { received: session.received, offer });
    onStatus('saving');
    await sink.close();
    closed = true;
    session.acknowledge(now());
    return 'stop';
  }

  if (offer !== null && !closed && sink === null) {
    return { offer, entries, received: 0n, refused: true };
  }
  return { offer, entries, received: session.received, refused: false };
}

/**
 * Send `source`: {offer, manifest, chunks()} where chunks() yields the
 * bytes (Uint8Array) in order, once per attempt (source.js builds it).
 * onCode(code) is called once the relay gave a nameplate; onStatus(text,
 * detail) reports progress. Resolves once a receiver acknowledged; throws
 * a FerryError (after `attempts` wrong codes or refusals, the last one).
 */
export async function send({ connect, source, now, onCode = () => {}, onStatus = () => {}, signal,
  attempts = DEFAULT_ATTEMPTS, standby = true, sessionOptions = {} }) {
  onStatus('connecting');
  const control = await connect();
  const controlReader = new Reader(control, now, signal);
  const lines = new LineBuffer();
  const tickets = [];
  let joining = null;
  let wake = null;
  let controlError = null;
  let nameplate = null;
  let code = null;

  const nextMessage = async () => {
    for (;;) {
      const line = lines.nextLine();
      if (line !== null) return parseRelayLine(line);
      const data = await controlReader.read();
      if (data === CANCELLED) throw new Cancelled();
      if (data === null) throw new ConnectionLost('the relay closed the connection');
      lines.receiveData(data);
    }
  };

  try {
    await control.write(sendRequest({ standby }));
    let first = await nextMessage();
    if (first.kind === 'error' && first.reason === 'bad-request' && standby) {
      control.close();
      return await send({ connect, source, now, onCode, onStatus, signal, attempts, standby: false, sessionOptions });
    }
    if (first.kind === 'error') throw refusalError(first.reason, first.text, null);
    if (first.kind !== 'nameplate') throw new RemoteProtocolError(`the relay sent ${first.kind} before a nameplate`);
    nameplate = first.nameplate;
    code = generateCode(nameplate);
    onCode(code);
    onStatus('waiting for the receiver');

    // The control connection, read for as long as the transfer runs: PING is
    // answered, tickets are queued for the attempts, an ERROR or a close ends it.
    const controlLoop = (async () => {
      try {
        for (;;) {
          const message = await nextMessage();
          if (message.kind === 'ping') await control.write(pong());
          else if (message.kind === 'ticket' || message.kind === 'incoming') {
            // One connection per ticket: an INCOMING for the ticket already queued
            // or being joined is the same receiver, not another one.
            if (message.ticket !== joining && !tickets.includes(message.ticket)) tickets.push(message.ticket);
          }
          else if (message.kind === 'error') throw refusalError(message.reason, message.text, nameplate);
          else throw new RemoteProtocolError(`the relay sent an unexpected ${message.kind}`);
          wake?.();
        }
      } catch (error) {
        controlError = error;
        wake?.();
      }
    })();
    void controlLoop;

    let failures = 0;
    let lastError = null;
    const cancelled = new Promise((resolve) => signal?.addEventListener('abort', resolve, { once: true }));
    for (;;) {
      while (!tickets.length && controlError === null) {
        checkCancel(signal);
        await Promise.race([new Promise((resolve) => { wake = resolve; }), cancelled]);
        wake = null;
      }
      checkCancel(signal);
      if (!tickets.length) throw controlError;
      const ticket = tickets.shift();
      joining = ticket;
      try {
        await attempt({ connect, code, nameplate, ticket, source, now, onStatus, signal, sessionOptions });
        onStatus('done');
        return { code };
      } catch (error) {
        if (!(error instanceof FerryError) || error instanceof Cancelled) throw error;
        if (error.costsNothing) {
          onStatus('waiting for the receiver', { error });
          continue;
        }
        failures += 1;
        lastError = error;
        if (!(error instanceof WrongCode || error instanceof RefusedByPeer) || failures >= attempts) {
          throw lastError;
        }
        onStatus('waiting for the receiver', { error, failures, attempts });
      } finally {
        joining = null;
      }
    }
  } finally {
    control.close();
  }
}

async function attempt({ connect, code, nameplate, ticket, source, now, onStatus, signal, sessionOptions }) {
  const conn = await connect();
  const reader = new Reader(conn, now, signal);
  const session = new SenderSession(code.password, source.offer, { manifest: source.manifest ?? [], ...sessionOptions });
  try {
    await conn.write(concat(joinRequest(nameplate, ticket), session.firstFlight()));
    let rest;
    try {
      rest = await untilPaired(reader, new LineBuffer(), nameplate);
    } catch (error) {
      // A stale ticket: the receiver it was for was served or left; wait for the next.
      const stale = error instanceof RelayRefused && error.reason === 'stale-ticket';
      if (error instanceof ConnectionLost || stale) error.costsNothing = true;
      throw error;
    }
    onStatus('checking the code');
    let chunks = null;
    await converse(session, conn, reader, now, rest, async (event) => {
      if (event.type === 'confirmed') onStatus('waiting for the receiver to accept');
      if (event.type === 'answered') {
        if (!event.answer.accept) {
          const said = shown(event.answer.message || event.answer.reason);
          throw new RefusedByPeer(`the receiver refused: ${said}`, event.answer.reason);
        }
        onStatus('sending', { sent: 0n, offer: session.offer });
        chunks = source.chunks()[Symbol.asyncIterator]();
        await pump(session, conn, chunks, now, onStatus, signal);
        onStatus('waiting for the receiver to confirm');
      }
      if (event.type === 'acknowledged') return 'stop';
      return null;
    }, signal).catch((error) => {
      if (error instanceof ConnectionLost && session.state === State.KEY_EXCHANGE) error.costsNothing = true;
      throw error;
    });
  } finally {
    conn.close();
  }
}

/**
 * Send every byte of the source in RECORD_SIZE records; the last is FINAL.
 * RECORDS_PER_WRITE records are queued before each write, so the sealing of
 * one batch overlaps in WebCrypto and the driver awaits once per batch, not
 * once per record (at most 1 MiB of plaintext held beyond the source's read).
 */
async function pump(session, conn, chunks, now, onStatus, signal) {
  let held = new Uint8Array(0);
  const total = session.offer.size;
  let lastReport = -Infinity;
  for (;;) {
    if (signal?.aborted) throw new Cancelled(); // converse() sends the ABORT
    for (let queued = 0; queued < RECORDS_PER_WRITE && session.state === State.SENDING; queued += 1) {
      while (held.length < RECORD_SIZE) {
        const next = await chunks.next();
        if (next.done) break;
        held = held.length ? concat(held, next.value) : next.value;
      }
      const piece = held.subarray(0, Math.min(RECORD_SIZE, held.length));
      held = held.subarray(piece.length);
      if (!piece.length && session.sent !== total) {
        throw new FerryError(`the source ended after ${session.sent} of ${total} bytes`);
      }
      session.sendData(piece, now());
    }
    await conn.write(await session.dataToSend());
    session.wrote(now());
    if (now() - lastReport >= REPORT_EVERY || session.state !== State.SENDING) {
      lastReport = now();
      onStatus('sending', { sent: session.sent, offer: session.offer });
    }
    if (session.state !== State.SENDING) return;
  }
}
