/**
 * Small helpers shared by the log, storage and the state machine.
 *
 * @module
 */
import type { Entry } from "./types.ts";

/** No size limit. */
export const noLimit: number = Number.POSITIVE_INFINITY;

/** The size an entry counts for in message and Ready limits: its payload. */
export function entrySize(e: Entry): number {
  return e.data.byteLength;
}

/** Total payload size of `entries`. */
export function entriesSize(entries: readonly Entry[]): number {
  let size = 0;
  for (const e of entries) size += entrySize(e);
  return size;
}

/**
 * The longest prefix of `entries` whose size stays within `maxSize`, but never less than one
 * entry, so that an oversized entry still makes progress.
 */
export function limitSize(entries: Entry[], maxSize: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entrySize(entries[0]);
  let n = 1;
  for (; n < entries.length; n++) {
    size += entrySize(entries[n]);
    if (size > maxSize) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}
