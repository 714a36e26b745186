/**
 * Upcasters: how an event written in an old shape reads as the current one (DESIGN.md contract
 * 7: an event once written decodes forever; history is never edited).
 *
 * When an event type's shape changes, its schema in `schema.ts` gets a new `v`, and an upcaster
 * from the old `(type, v)` is registered on {@linkcode upcasters} below. Decoding applies
 * upcasters in a chain (v1 → v2 → v3) until none applies, so each one only knows the next
 * version. Upcasters are pure functions of the stored event: they run on every replay.
 *
 * @module
 */
import type { ShoalEvent } from "./schema.ts";

/** An event as stored, at any version: before upcasting, `data` may have an old shape. */
export interface StoredEvent {
  /** The event type, as written (an upcaster may rename it). */
  type: string;
  /** The shape version, as written. */
  v: number;
  /** The payload, in the shape of `(type, v)`. */
  data: unknown;
  /** Provenance; its shape is shared by every event type. */
  meta: unknown;
}

/** Turns an event stored as one `(type, v)` into a later version (or a renamed type). */
export type Upcaster = (event: StoredEvent) => StoredEvent;

/** Longest chain of upcasters one event may go through: more means two of them loop. */
const MAX_CHAIN = 64;

/** A set of upcasters by `(type, v)`. The codec takes one, so tests can inject their own. */
export class UpcasterRegistry {
  #byType = new Map<string, Map<number, Upcaster>>();
  #size = 0;

  /**
   * Registers how an event stored as `(type, v)` becomes a later version. Throws if one is
   * already registered for that pair: two answers to one question is a bug.
   */
  register(type: string, v: number, upcaster: Upcaster): this {
    let versions = this.#byType.get(type);
    if (versions === undefined) this.#byType.set(type, versions = new Map());
    if (versions.has(v)) throw new Error(`An upcaster for ${type} v${v} is already registered`);
    versions.set(v, upcaster);
    this.#size++;
    return this;
  }

  /** How many upcasters are registered. */
  get size(): number {
    return this.#size;
  }

  /** The upcaster for `(type, v)`, if any. */
  get(type: string, v: number): Upcaster | undefined {
    return this.#byType.get(type)?.get(v);
  }

  /**
   * The event in its current shape: applies upcasters until none matches. An event with no
   * upcaster is returned as it is (the same object), so current events cost one map lookup.
   */
  upcast(event: StoredEvent): ShoalEvent {
    let current = event;
    for (let steps = 0;; steps++) {
      const upcaster = this.#byType.get(current.type)?.get(current.v);
      if (upcaster === undefined) return current as ShoalEvent;
      if (steps === MAX_CHAIN) {
        throw new Error(
          `Upcasting ${event.type} v${event.v} went through ${MAX_CHAIN} steps: upcasters loop`,
        );
      }
      current = upcaster(current);
    }
  }
}

/**
 * Shoal's upcasters. Every event type is at v1 today, so none is registered. Register here, e.g.
 * `upcasters.register("TaskCreated", 1, (e) => ({ ...e, v: 2, data: { ...e.data, x: 0 } }))`.
 */
export const upcasters: UpcasterRegistry = new UpcasterRegistry();

/** An event stored at any version, in its current shape (using {@linkcode upcasters}). */
export function upcastEvent(
  event: StoredEvent,
  registry: UpcasterRegistry = upcasters,
): ShoalEvent {
  return registry.upcast(event);
}
