/**
 * How an entity refuses an event or a command: a stable code and a message a person can act on.
 *
 * @module
 */

/** Stable codes for refused events and commands. */
export type RejectionCode =
  | "version_conflict"
  | "not_found"
  | "already_exists"
  | "name_conflict"
  | "invalid_transition"
  | "invalid_reference"
  | "in_use"
  | "invalid_argument"
  | "unknown_event";

/** An event the fold refuses (and, from `decide`, a command an entity refuses). */
export class EventRejected extends Error {
  /** Stable code naming the kind of refusal. */
  readonly code: RejectionCode;

  /** Creates a refusal with a stable code and a human message. */
  constructor(code: RejectionCode, message: string) {
    super(message);
    this.name = "EventRejected";
    this.code = code;
  }
}
