// Every error the browser core raises, mirroring src/ferry/errors.py.
//
// Theory of operation: the core never throws a library's error at its
// caller. A peer's garbage is a RemoteProtocolError, our own misuse a
// LocalProtocolError, a record that fails to open an IntegrityError, a code
// that does not parse an InvalidCode. The page maps each class to one line
// for the person, as the CLI maps the Python classes to a line and an exit
// code. The default message is the sentence a person reads.

export class FerryError extends Error {
  constructor(message) {
    super(message ?? 'ferry failed.');
    this.name = new.target.name;
  }
}

export class InvalidCode extends FerryError {
  constructor(message) {
    super(message ?? 'that is not a ferry code (expected something like 7-guitar-orbit-velvet).');
  }
}

export class ProtocolError extends FerryError {}

export class LocalProtocolError extends ProtocolError {
  constructor(message) {
    super(message ?? 'ferry misused its own protocol (a bug).');
  }
}

export class RemoteProtocolError extends ProtocolError {
  constructor(message) {
    super(message ?? 'the other side sent something that is not valid ferry protocol.');
  }
}

export class IntegrityError extends FerryError {
  constructor(message) {
    super(message ?? 'the data was altered in transit (authentication failed).');
  }
}

/** The peer's key confirmation did not match: the two sides used different codes. */
export class WrongCode extends FerryError {
  constructor(message) {
    super(message ?? 'wrong code.');
  }
}

/** A session timer ran out (the peer stopped responding). */
export class TimedOut extends FerryError {}

/** The connection ended before the transfer did. */
export class ConnectionLost extends FerryError {
  constructor(message) {
    super(message ?? 'the connection to the relay was lost.');
  }
}

/** The relay answered ERROR <reason>; `message` is our own sentence for it. */
export class RelayRefused extends FerryError {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

/** The peer refused the offer (ANSWER accept:false) or sent ABORT. */
export class RefusedByPeer extends FerryError {
  constructor(message, reason = '') {
    super(message);
    this.reason = reason;
  }
}

/** We stopped (the person pressed Cancel). */
export class Cancelled extends FerryError {
  constructor(message) {
    super(message ?? 'cancelled.');
  }
}
