/**
 * What an entity's `decide` is given besides the state and the command.
 *
 * @module
 */
import type { EventMeta } from "../../events/schema.ts";

/** What `decide` is given besides the state: who asks, and the impure inputs, as values. */
export interface DecideContext {
  /** Provenance: `user:<api call>`. */
  by: string;
  /** The clock reading for this command, in ms. */
  now: number;
  /** A fresh object id (called once per object created). */
  newId: () => string;
}

/** Provenance for an event decided from a user's command. */
export function userMeta(ctx: DecideContext, reason: string, expect?: number): EventMeta {
  return expect === undefined ? { by: ctx.by, reason } : { by: ctx.by, reason, expect };
}
