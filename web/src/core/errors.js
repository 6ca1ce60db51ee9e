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
