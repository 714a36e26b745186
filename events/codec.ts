/**
 * The bytes of the log: how a batch of events becomes bytes and back, and how stored records are
 * checksummed.
 *
 * Encoding is msgpack via msgpackr with its record extension: an object's keys are written once
 * as a "structure" and later objects of the same shape refer to it by a 1-2 byte id, which makes
 * the bytes smaller and decoding 2-3x faster than plain msgpack maps.
 *
 * Two formats, told apart by the first byte, and every codec decodes both:
 *
 * - **shared** (format 1, a codec built with a {@linkcode StructureStore}): structures are
 *   shared across entries and kept in the store. msgpackr calls the store's `save` *inside*
 *   encoding, before it returns the bytes, so no bytes ever refer to a structure that is not
 *   durable. The header names how many shared structures the payload may use and a fingerprint
 *   of them, so a codec whose store lacks them, or holds different ones, fails loudly with
 *   {@linkcode MissingStructuresError} instead of decoding garbage (msgpackr alone would read an
 *   unknown one-byte record id as a small integer and carry on).
 * - **inline** (format 2, a codec without a store): each entry defines the structures it uses,
 *   once, so its bytes decode anywhere with no other state. At 100 events a batch this costs
 *   about 2% more bytes and 25-30% of decoding speed; a one-event batch is about 1.7x as large
 *   and decodes about 3x slower (see bench/codec_bench.ts).
 *
 * Shared structures live in one node's store, not in the log: bytes in the shared format
 * decode only where that store is. Entries or snapshots sent to other nodes must be inline, or
 * the structure table must travel with the log (a follower with another table gets a
 * MissingStructuresError, never wrong events).
 *
 * Layout: shared = `[1][u16 structure count][u32 fingerprint][msgpack]`; inline =
 * `[2][msgpack]` (big-endian).
 *
 * `encodeBatch` writes batches with {@linkcode RecordWriter} (events/record_writer.ts), a
 * hand-written encoder that makes msgpackr's exact bytes about twice as fast, and falls back to
 * msgpackr for what it does not handle (a shape that becomes a new shared structure, byte
 * arrays, `undefined`). The format is unchanged: every codec, old or new, decodes either.
 *
 * @module
 */
import { Packr, Unpackr } from "msgpackr";
import type { z } from "zod";
import { crc32c } from "./crc32c.ts";
import { RecordWriter } from "./record_writer.ts";
import { Batch, MAX_BATCH_BYTES, MAX_BATCH_EVENTS } from "./schema.ts";
import { type StoredEvent, type UpcasterRegistry, upcasters as shoalUpcasters } from "./upcast.ts";

/** The shared record structures: for each, the object keys in order. Append-only. */
export type Structures = string[][];

/**
 * Durable home of a codec's shared structures (the SQLite store keeps them in a table).
 * Synchronous on purpose: msgpackr saves from inside `pack()`, before the bytes are returned.
 */
export interface StructureStore {
  /** The structures saved last, or `undefined` if none ever were. */
  load(): Structures | undefined;
  /**
   * Replaces the stored structures (the new list extends the old one). Must be durable when it
   * returns: entries that use these structures may be written right after.
   */
  save(structures: Structures): void;
}

/** A {@linkcode StructureStore} in memory, for tests and for one process's lifetime. */
export class MemoryStructureStore implements StructureStore {
  #structures: Structures | undefined;

  /** Starts with `structures`, or empty. */
  constructor(structures?: Structures) {
    this.#structures = structures && copyStructures(structures);
  }

  /** A copy of the saved structures (callers may not alias them). */
  load(): Structures | undefined {
    return this.#structures && copyStructures(this.#structures);
  }

  /** Keeps a copy of `structures`. */
  save(structures: Structures): void {
    this.#structures = copyStructures(structures);
  }
}

/** Bytes that cannot be decoded: an unknown format, truncated or malformed msgpack. */
export class DecodeError extends Error {
  /** Describes why `bytes` could not be decoded. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DecodeError";
  }
}

/**
 * Bytes that refer to shared structures this codec's store does not hold (or holds different
 * ones of): the store is behind the log, or belongs to another log.
 */
export class MissingStructuresError extends DecodeError {
  /** Describes which structures are missing. */
  constructor(message: string) {
    super(message);
    this.name = "MissingStructuresError";
  }
}

/** A decoded batch that does not match the `Batch` schema ({@linkcode EventCodec.decodeBatchChecked}). */
export class InvalidBatchError extends Error {
  /** The zod issues, each with the path of the bad field. */
  readonly issues: z.core.$ZodIssue[];

  /** Names the first bad fields from `issues`. */
  constructor(issues: z.core.$ZodIssue[]) {
    super(`Invalid batch: ${issues.slice(0, 3).map(describeIssue).join("; ")}`);
    this.name = "InvalidBatchError";
    this.issues = issues;
  }
}

/** A stored record whose checksum does not match its bytes (DESIGN.md contract 11). */
export class CorruptRecordError extends Error {
  /** The log index (or other position) of the record. */
  readonly index: number;

  /** `detail` says what is wrong, e.g. `checksum mismatch (stored 0x…, computed 0x…)`. */
  constructor(index: number, detail: string) {
    super(`Corrupt record at index ${index}: ${detail}`);
    this.name = "CorruptRecordError";
    this.index = index;
  }
}

/** Options of an {@linkcode EventCodec}. */
export interface EventCodecOptions {
  /** Where shared structures are kept; without one, every encoding is self-describing. */
  store?: StructureStore;
  /** Upcasters applied by `decodeBatch`; Shoal's own by default. */
  upcasters?: UpcasterRegistry;
  /**
   * Most shared structures (default 512; msgpackr allows 8160). Objects of other shapes are
   * written as plain msgpack maps: correct, a little bigger and slower. Never lower it below
   * what a store already holds (msgpackr then refuses to encode).
   */
  maxSharedStructures?: number;
}

const FORMAT_SHARED = 1;
const FORMAT_INLINE = 2;
const SHARED_HEADER = 7;
const INLINE_HEADER = 1;
const INLINE_HEADER_BYTES = new Uint8Array([FORMAT_INLINE]);

/**
 * Encodes batches (and snapshots) to bytes and back. Meant as one codec per store; several
 * codecs on one store (in one process, as `load`/`save` are not one transaction) are safe:
 * a codec that finds the store extended by another merges it and encodes again.
 */
export class EventCodec {
  #store: StructureStore | undefined;
  #upcasters: UpcasterRegistry;
  #packr: Packr;
  #inline: Unpackr;
  /** A copy of the structures msgpackr last loaded or saved: what the header describes. */
  #table: Structures = [];
  /** `#fingerprints[n]`: fingerprint of `#table`'s first n structures, filled lazily. */
  #fingerprints: number[] = [0];
  #maxShared: number;
  /** The fast batch encoder for `#table`, made on first use after the table changes. */
  #writer: RecordWriter | undefined;
  /** The shared-format header of `#table`, for `#writer`'s outputs. */
  #writerHeader = new Uint8Array(0);

  /** A codec; see {@linkcode EventCodecOptions}. */
  constructor(options: EventCodecOptions = {}) {
    this.#store = options.store;
    this.#upcasters = options.upcasters ?? shoalUpcasters;
    this.#maxShared = options.maxSharedStructures ?? 512;
    // useToJSON off: what is stored is the object's own fields, never an API view of it.
    // mapsAsObjects: objects written as plain msgpack maps (below) must decode as objects.
    const common = { useRecords: true, useToJSON: false, mapsAsObjects: true } as const;
    this.#inline = new Unpackr(common);
    const store = this.#store;
    if (store === undefined) {
      // At most 64 structures a message keeps msgpackr on its one-byte record ids.
      this.#packr = new Packr({ ...common, maxOwnStructures: 64 });
      return;
    }
    this.#packr = new Packr({
      ...common,
      maxSharedStructures: this.#maxShared,
      // No per-message ("own") structures: past 32 shared ones msgpackr switches to two-byte
      // record ids, and its two-byte own-structure references do not decode while fewer than
      // 33 structures are shared (msgpackr 2.1.3). Shapes that are not shared are written as
      // plain msgpack maps instead, which is what user-keyed objects are anyway.
      maxOwnStructures: 0,
      // Labels and other user-keyed maps would each take a shared slot for good; share only
      // shapes made of schema field names. This decides compactness only, never correctness.
      shouldShareStructure: shareable,
      getStructures: () => {
        this.#setTable(this.#load());
        return copyStructures(this.#table);
      },
      // msgpackr's protocol: `isCompatible(stored)` is false when another writer extended the
      // store since we last loaded it; it then merges those structures, and returning false
      // makes it encode again on top of them (and save again).
      saveStructures: ((structures: Structures, isCompatible: (s?: Structures) => boolean) => {
        const stored = this.#load();
        if (!isCompatible(copyStructures(stored))) {
          this.#setTable(stored);
          return false;
        }
        const saved = copyStructures(structures);
        store.save(saved);
        this.#setTable(saved);
      }) as (structures: object[]) => boolean | void,
    });
  }

  /** How many shared structures this codec knows (0 without a store). */
  get sharedStructures(): number {
    return this.#table.length;
  }

  /**
   * The bytes of `batch`, as one log entry. Throws a RangeError when the batch has no events,
   * more than `MAX_BATCH_EVENTS`, or encodes to more than `MAX_BATCH_BYTES`.
   *
   * The bytes may be a view into a 64 KiB block shared with other outputs (never written
   * again): mind `byteOffset` when using `.buffer`.
   */
  encodeBatch(batch: Batch): Uint8Array {
    const count = batch.events.length;
    if (count < 1 || count > MAX_BATCH_EVENTS) {
      throw new RangeError(
        `A batch holds 1 to ${MAX_BATCH_EVENTS} events; this one has ${count}: split it`,
      );
    }
    const bytes = this.#writeFast(batch) ?? this.encode(batch);
    if (bytes.length > MAX_BATCH_BYTES) {
      throw new RangeError(
        `Batch of ${count} events encodes to ${bytes.length} bytes, over MAX_BATCH_BYTES ` +
          `(${MAX_BATCH_BYTES}): split it into smaller batches`,
      );
    }
    return bytes;
  }

  /**
   * The batch in `bytes`, every event upcast to its current shape. Not validated (replay must be
   * fast and stored bytes are checksummed); see {@linkcode decodeBatchChecked}.
   */
  decodeBatch(bytes: Uint8Array): Batch {
    const value = this.decode(bytes) as { events?: unknown };
    if (typeof value !== "object" || value === null || !Array.isArray(value.events)) {
      throw new DecodeError("Decoded value is not a batch (it has no events array)");
    }
    const batch = value as Batch;
    if (this.#upcasters.size > 0) {
      const events = batch.events as StoredEvent[];
      for (let i = 0; i < events.length; i++) events[i] = this.#upcasters.upcast(events[i]);
    }
    return batch;
  }

  /**
   * Like {@linkcode decodeBatch}, then validates the batch against the `Batch` schema and throws
   * {@linkcode InvalidBatchError} naming the bad field. Returns the decoded batch, not zod's
   * output, so it is the same value `decodeBatch` gives.
   */
  decodeBatchChecked(bytes: Uint8Array): Batch {
    const batch = this.decodeBatch(bytes);
    const result = Batch.safeParse(batch);
    if (!result.success) throw new InvalidBatchError(result.error.issues);
    return batch;
  }

  /**
   * The bytes of any value (snapshots): plain objects, arrays, strings, numbers, booleans,
   * null, undefined, Uint8Arrays. A `Map` is written as a msgpack map and decodes as a plain
   * object: store entries as arrays instead.
   */
  encode(value: unknown): Uint8Array {
    const payload = this.#packr.pack(value);
    if (this.#store === undefined) {
      const out = new Uint8Array(INLINE_HEADER + payload.length);
      out[0] = FORMAT_INLINE;
      out.set(payload, INLINE_HEADER);
      return out;
    }
    // A fresh, exact-size array: the payload is a view into msgpackr's reused buffer.
    const count = this.#table.length;
    const out = new Uint8Array(SHARED_HEADER + payload.length);
    const view = new DataView(out.buffer);
    out[0] = FORMAT_SHARED;
    view.setUint16(1, count);
    view.setUint32(3, this.#fingerprint(count));
    out.set(payload, SHARED_HEADER);
    return out;
  }

  /**
   * `batch` in the bytes msgpackr would make, by {@linkcode RecordWriter}, or `undefined` when
   * msgpackr must encode it (a new shared structure, or a value the writer does not handle).
   */
  #writeFast(batch: Batch): Uint8Array | undefined {
    if (this.#store === undefined) {
      this.#writer ??= new RecordWriter();
      return this.#writer.write(batch, INLINE_HEADER_BYTES);
    }
    if (this.#writer === undefined) {
      const count = this.#table.length;
      this.#writer = new RecordWriter({
        shared: this.#table,
        maxSharedStructures: this.#maxShared,
        shouldShare: shareable,
      });
      this.#writerHeader = new Uint8Array(SHARED_HEADER);
      this.#writerHeader[0] = FORMAT_SHARED;
      const view = new DataView(this.#writerHeader.buffer);
      view.setUint16(1, count);
      view.setUint32(3, this.#fingerprint(count));
    }
    return this.#writer.write(batch, this.#writerHeader);
  }

  /** The value in `bytes` made by {@linkcode encode} (of this or a compatible codec). */
  decode(bytes: Uint8Array): unknown {
    const format = bytes[0];
    if (format === FORMAT_SHARED) {
      if (bytes.length <= SHARED_HEADER) throw new DecodeError(`Truncated: ${bytes.length} bytes`);
      const view = new DataView(bytes.buffer, bytes.byteOffset, SHARED_HEADER);
      const count = view.getUint16(1);
      if (count > 0) this.#checkStructures(count, view.getUint32(3));
      return this.#unpack(this.#packr, bytes.subarray(SHARED_HEADER));
    }
    if (format === FORMAT_INLINE) {
      if (bytes.length <= INLINE_HEADER) throw new DecodeError(`Truncated: ${bytes.length} bytes`);
      return this.#unpack(this.#inline, bytes.subarray(INLINE_HEADER));
    }
    throw new DecodeError(
      bytes.length === 0 ? "No bytes to decode" : `Unknown encoding format ${hex(format, 2)}`,
    );
  }

  #unpack(unpackr: Unpackr, payload: Uint8Array): unknown {
    try {
      return unpackr.unpack(payload);
    } catch (error) {
      throw new DecodeError(`Malformed msgpack: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Throws unless this codec holds exactly the `count` structures the bytes were made with. */
  #checkStructures(count: number, fingerprint: number): void {
    if (count > this.#table.length && this.#store !== undefined) this.#setTable(this.#load());
    if (count > this.#table.length) {
      throw new MissingStructuresError(
        `Entry uses ${count} shared record structures but ` +
          (this.#store === undefined
            ? "this codec has no structure store"
            : `the structure store holds ${this.#table.length}`) +
          ": the store is behind the log or belongs to another one",
      );
    }
    const mine = this.#fingerprint(count);
    if (mine !== fingerprint) {
      throw new MissingStructuresError(
        `Entry was encoded with other shared record structures than this store holds ` +
          `(fingerprint of the first ${count}: entry ${hex(fingerprint, 8)}, store ${
            hex(mine, 8)
          }): the store belongs to another log`,
      );
    }
  }

  #load(): Structures {
    const stored = this.#store?.load() ?? [];
    if (!Array.isArray(stored)) throw new TypeError("The structure store holds no array");
    stored.forEach((keys, i) => {
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
        throw new TypeError(`The structure store holds an invalid structure at ${i}`);
      }
    });
    return stored;
  }

  #setTable(structures: Structures): void {
    this.#table = copyStructures(structures);
    this.#fingerprints = [0];
    this.#writer = undefined;
  }

  #fingerprint(count: number): number {
    const fps = this.#fingerprints;
    for (let i = fps.length - 1; i < count; i++) {
      fps.push(crc32c(utf8.encode(JSON.stringify(this.#table[i])), fps[i]));
    }
    return fps[count];
  }
}

/** Bytes of the checksum {@linkcode sealRecord} appends. */
export const RECORD_CHECKSUM_BYTES = 4;

/** `payload` followed by its CRC32C (4 bytes, little-endian): a record as stored. */
export function sealRecord(payload: Uint8Array): Uint8Array {
  const record = new Uint8Array(payload.length + RECORD_CHECKSUM_BYTES);
  record.set(payload);
  new DataView(record.buffer).setUint32(payload.length, crc32c(payload), true);
  return record;
}

/**
 * The payload of a record made by {@linkcode sealRecord} (a view, not a copy). Throws
 * {@linkcode CorruptRecordError} naming `index` when the checksum does not match.
 */
export function openRecord(record: Uint8Array, index: number): Uint8Array {
  if (record.length < RECORD_CHECKSUM_BYTES) {
    throw new CorruptRecordError(index, `too short (${record.length} bytes)`);
  }
  const end = record.length - RECORD_CHECKSUM_BYTES;
  const payload = record.subarray(0, end);
  const stored = new DataView(record.buffer, record.byteOffset + end, RECORD_CHECKSUM_BYTES)
    .getUint32(0, true);
  const computed = crc32c(payload);
  if (stored !== computed) {
    throw new CorruptRecordError(
      index,
      `checksum mismatch (stored ${hex(stored, 8)}, computed ${hex(computed, 8)})`,
    );
  }
  return payload;
}

// ---------------------------------------------------------------------------------------------

const utf8 = new TextEncoder();

function hex(n: number, digits: number): string {
  return `0x${n.toString(16).padStart(digits, "0")}`;
}

function copyStructures(structures: Structures): Structures {
  return structures.map((keys) => [...keys]);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`).join("");
  return `${path.replace(/^\./, "") || "(batch)"}: ${issue.message}`;
}

/** Whether a shape is made of schema field names only: then it is worth a shared structure. */
function shareable(keys: readonly string[]): boolean {
  return keys.every((key) => FIELD_NAMES.has(key));
}

/** Every object key the event schemas define: the shapes worth sharing. */
const FIELD_NAMES: ReadonlySet<string> = fieldNames(Batch);

function fieldNames(schema: z.core.$ZodType): Set<string> {
  const names = new Set<string>();
  const seen = new Set<z.core.$ZodType>();
  const walk = (s: z.core.$ZodType): void => {
    if (seen.has(s)) return;
    seen.add(s);
    // deno-lint-ignore no-explicit-any
    const def = s._zod.def as any;
    switch (def.type) {
      case "object":
        for (const [key, value] of Object.entries(def.shape)) {
          names.add(key);
          walk(value as z.core.$ZodType);
        }
        break;
      case "array":
        return walk(def.element);
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "readonly":
      case "nonoptional":
      case "catch":
        return walk(def.innerType);
      case "union":
        for (const option of def.options) walk(option);
        break;
      case "record":
        return walk(def.valueType);
      case "pipe":
        walk(def.in);
        return walk(def.out);
      case "lazy":
        return walk(def.getter());
    }
  };
  walk(schema);
  return names;
}
