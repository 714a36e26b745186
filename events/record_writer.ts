/**
 * A hand-written encoder of batches in msgpackr's record format: the bytes `Packr.pack` would
 * write for the same batch (byte for byte; `record_writer_test.ts` checks it against msgpackr),
 * so every decoder of the log reads them unchanged. It exists for speed: msgpackr finds each
 * object's structure by walking a trie of dictionary objects, key by key; this writer remembers,
 * at each place in an event of a given type, the few key lists it met there, and confirms an
 * object has one of them by comparing interned key strings. Hot event shapes are then encoded in
 * one pass with no lookups and no allocation but the result.
 *
 * It never adds structures: a batch with an object whose shape msgpackr would make a new shared
 * structure, or with a value it does not handle (`undefined`, bigints, byte arrays, Maps,
 * class instances, more than 64 inline shapes), is refused (`undefined`) and the caller falls
 * back to msgpackr, which then records the new structure, so the next such batch is fast.
 *
 * @module
 */

/** How the writer lays records out; the same settings the codec gives msgpackr. */
export interface RecordWriterOptions {
  /**
   * The shared structures (index i is record id 0x40 + i), or `undefined` for the inline
   * format, where each batch defines the shapes it uses (msgpackr's own structures).
   */
  shared?: readonly (readonly string[])[];
  /** Most shared structures msgpackr may hold (decides one- or two-byte record ids). */
  maxSharedStructures?: number;
  /** Whether msgpackr would make a new shape a shared structure (else a plain map). */
  shouldShare?: (keys: readonly string[]) => boolean;
}

/** Most shapes one inline batch may define (the codec's `maxOwnStructures`). */
const MAX_INLINE_SHAPES = 64;
/** Bytes of each block outputs are carved from. */
const BLOCK_BYTES = 1 << 16;
/** Most key lists an inline writer remembers (past it, msgpackr encodes). */
const MAX_KEY_LISTS = 4096;
/** Most shapes remembered per place in an event before the oldest is forgotten. */
const SHAPES_PER_SITE = 4;

/** How objects of one key list are written (one per key list, as msgpackr has). */
interface Layout {
  /** Record id (0x40...), or -1 for a plain msgpack map. Inline: set per batch. */
  id: number;
  /** Inline format: the batch in which `id` was defined. */
  epoch: number;
}

/** One object shape at one place: its keys, its record, and the places below its values. */
interface Shape {
  readonly keys: readonly string[];
  readonly record: Layout;
  /** `children[i]`: the place of `keys[i]`'s value. */
  readonly children: Site[];
}

/** A place in a value (e.g. `data.status` of a TaskStatusReported): the shapes met there. */
interface Site {
  shapes: Shape[];
  /** The place of this array's elements. */
  items: Site | undefined;
}

/** Thrown inside the writer when msgpackr must encode the batch instead. */
const REFUSE = Symbol("refuse");

const utf8 = new TextEncoder();

function site(): Site {
  return { shapes: [], items: undefined };
}

/**
 * Encodes batches as msgpackr would, fast, into a reused buffer. One writer per structure
 * table: build a new one when the table changes.
 */
export class RecordWriter {
  /** The block outputs are written into, one after another; a new one when it is full. */
  #buf = new Uint8Array(BLOCK_BYTES);
  #view = new DataView(this.#buf.buffer);
  /** Where the output being written starts in `#buf`. */
  #start = 0;
  #pos = 0;
  readonly #inline: boolean;
  readonly #twoByte: boolean;
  /** Shared format: record id by `JSON.stringify(keys)`. */
  readonly #ids = new Map<string, number>();
  /** Inline format: the record of each key list met, by `JSON.stringify(keys)`. */
  readonly #inlineRecords = new Map<string, Layout>();
  readonly #room: boolean;
  readonly #shouldShare: (keys: readonly string[]) => boolean;
  readonly #batchSite = site();
  readonly #eventSites = new Map<string, Site>();
  readonly #otherEvents = site();
  #epoch = 0;
  #nextInlineId = 0x40;

  /** A writer for one structure table; see {@linkcode RecordWriterOptions}. */
  constructor(options: RecordWriterOptions = {}) {
    const shared = options.shared;
    this.#inline = shared === undefined;
    const max = this.#inline ? 0 : options.maxSharedStructures ?? 512;
    // msgpackr: two-byte ids past 0x60 when more than 32 structures may be shared (the inline
    // codec allows 64 own structures and none shared: one byte).
    this.#twoByte = max > 32;
    this.#room = !this.#inline && (shared?.length ?? 0) < max;
    this.#shouldShare = options.shouldShare ?? (() => true);
    // Later duplicates win, as in msgpackr's trie.
    shared?.forEach((keys, i) => this.#ids.set(JSON.stringify(keys), 0x40 + i));
  }

  /**
   * The bytes `header` followed by the msgpack of `batch`, or `undefined` when msgpackr must
   * encode this batch (see the module doc).
   *
   * The bytes are a view into a block of 64 KiB shared with the writer's other outputs (never
   * written again): allocating an array per output cost more than encoding a small batch.
   * Use `byteOffset` with `.buffer`; a long-lived copy of a few outputs may want `slice()`.
   */
  write(batch: object, header: Uint8Array): Uint8Array | undefined {
    if (batch === null || typeof batch !== "object" || batch.constructor !== Object) {
      return undefined;
    }
    this.#epoch++;
    this.#nextInlineId = 0x40;
    this.#pos = this.#start;
    this.#ensure(header.length);
    const buf = this.#buf;
    for (let i = 0; i < header.length; i++) buf[this.#pos++] = header[i];
    try {
      this.#writeBatch(batch as Record<string, unknown>);
    } catch (error) {
      if (error === REFUSE) return undefined;
      throw error;
    }
    const out = this.#buf.subarray(this.#start, this.#pos);
    this.#start = this.#pos;
    return out;
  }

  #writeBatch(batch: Record<string, unknown>): void {
    const shape = this.#shapeOf(batch, this.#batchSite);
    this.#writeHead(shape);
    const keys = shape.keys;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      const value = batch[key];
      if (key === "events" && Array.isArray(value)) this.#writeEvents(value);
      else this.#writeValue(value, shape.children[i]);
    }
  }

  /** Events get a place per type, so each type's data shapes are remembered apart. */
  #writeEvents(events: unknown[]): void {
    this.#writeArrayHeader(events.length);
    for (let i = 0; i < events.length; i++) {
      const event = events[i] as { type?: unknown };
      let where = this.#otherEvents;
      if (event !== null && typeof event === "object" && typeof event.type === "string") {
        where = this.#eventSites.get(event.type) ?? this.#newEventSite(event.type);
      }
      this.#writeValue(event, where);
    }
  }

  #newEventSite(type: string): Site {
    const where = site();
    if (this.#eventSites.size < 1024) this.#eventSites.set(type, where);
    return where;
  }

  #writeValue(value: unknown, where: Site): void {
    switch (typeof value) {
      case "string":
        return this.#writeString(value);
      case "number":
        return this.#writeNumber(value);
      case "boolean":
        this.#ensure(1);
        this.#buf[this.#pos++] = value ? 0xc3 : 0xc2;
        return;
      case "object": {
        if (value === null) {
          this.#ensure(1);
          this.#buf[this.#pos++] = 0xc0;
          return;
        }
        const constructor = value.constructor;
        if (constructor === Object) {
          return this.#writeObject(value as Record<string, unknown>, where);
        }
        if (constructor === Array) {
          const array = value as unknown[];
          const items = where.items ??= site();
          this.#writeArrayHeader(array.length);
          for (let i = 0; i < array.length; i++) this.#writeValue(array[i], items);
          return;
        }
        throw REFUSE;
      }
      default:
        throw REFUSE;
    }
  }

  #writeObject(object: Record<string, unknown>, where: Site): void {
    const shape = this.#shapeOf(object, where);
    this.#writeHead(shape);
    const keys = shape.keys;
    if (shape.record.id < 0) {
      for (let i = 0; i < keys.length; i++) {
        this.#writeString(keys[i]);
        this.#writeValue(object[keys[i]], shape.children[i]);
      }
      return;
    }
    // A for-in reads each value by the enum cache, where object[keys[i]] would look it up.
    const children = shape.children;
    let i = 0;
    for (const key in object) this.#writeValue(object[key], children[i++]);
  }

  /** The shape of `object` among those met at `where`, or found and remembered there. */
  #shapeOf(object: Record<string, unknown>, where: Site): Shape {
    const shapes = where.shapes;
    for (let s = 0; s < shapes.length; s++) {
      const keys = shapes[s].keys;
      let i = 0;
      let same = true;
      for (const key in object) {
        if (key !== keys[i++]) {
          same = false;
          break;
        }
      }
      if (same && i === keys.length) return shapes[s];
    }
    const shape = this.#resolve(object);
    if (shapes.length >= SHAPES_PER_SITE) shapes.shift();
    shapes.push(shape);
    return shape;
  }

  #resolve(object: Record<string, unknown>): Shape {
    const keys: string[] = [];
    for (const key in object) {
      // Only own keys, as msgpackr writes (a plain object has no enumerable inherited ones).
      if (!Object.hasOwn(object, key)) throw REFUSE;
      keys.push(key);
    }
    const children = keys.map(site);
    const name = JSON.stringify(keys);
    if (this.#inline) {
      let record = this.#inlineRecords.get(name);
      if (record === undefined) {
        if (this.#inlineRecords.size >= MAX_KEY_LISTS) throw REFUSE;
        this.#inlineRecords.set(name, record = { id: 0, epoch: 0 });
      }
      return { keys, record, children };
    }
    const id = this.#ids.get(name);
    if (id !== undefined) return { keys, record: { id, epoch: 0 }, children };
    // msgpackr would add this shape to the shared table: let it (and save it).
    if (this.#room && this.#shouldShare(keys)) throw REFUSE;
    if (keys.length >= 0x10000) throw REFUSE;
    return { keys, record: { id: -1, epoch: 0 }, children };
  }

  /** A record id (defining the record first, inline), or a map header. */
  #writeHead(shape: Shape): void {
    this.#ensure(4);
    const buf = this.#buf;
    const record = shape.record;
    if (this.#inline) {
      if (record.epoch === this.#epoch) {
        buf[this.#pos++] = record.id;
        return;
      }
      if (this.#nextInlineId >= 0x40 + MAX_INLINE_SHAPES) throw REFUSE;
      record.id = this.#nextInlineId++;
      record.epoch = this.#epoch;
      buf[this.#pos++] = 0xd4; // fixext 1
      buf[this.#pos++] = 0x72; // "r": a record definition
      buf[this.#pos++] = record.id;
      this.#writeArrayHeader(shape.keys.length);
      for (const key of shape.keys) this.#writeString(key);
      return;
    }
    const id = record.id;
    if (id < 0) {
      const length = shape.keys.length;
      buf[this.#pos++] = 0xde; // msgpackr writes every plain map as map 16
      buf[this.#pos++] = length >> 8;
      buf[this.#pos++] = length & 0xff;
    } else if (id >= 0x60 && this.#twoByte) {
      buf[this.#pos++] = ((id - 0x60) & 0x1f) + 0x60;
      buf[this.#pos++] = (id - 0x60) >> 5;
    } else {
      buf[this.#pos++] = id;
    }
  }

  #writeArrayHeader(length: number): void {
    this.#ensure(5);
    const buf = this.#buf;
    if (length < 0x10) {
      buf[this.#pos++] = 0x90 | length;
    } else if (length < 0x10000) {
      buf[this.#pos++] = 0xdc;
      buf[this.#pos++] = length >> 8;
      buf[this.#pos++] = length & 0xff;
    } else {
      buf[this.#pos++] = 0xdd;
      this.#view.setUint32(this.#pos, length);
      this.#pos += 4;
    }
  }

  /** As msgpackr: uint32 and int32 in the fewest bytes (fixints below 0x40), else a float64. */
  #writeNumber(value: number): void {
    this.#ensure(9);
    const buf = this.#buf;
    if (value >>> 0 === value) {
      if (value < 0x40) {
        buf[this.#pos++] = value;
      } else if (value < 0x100) {
        buf[this.#pos++] = 0xcc;
        buf[this.#pos++] = value;
      } else if (value < 0x10000) {
        buf[this.#pos++] = 0xcd;
        buf[this.#pos++] = value >> 8;
        buf[this.#pos++] = value & 0xff;
      } else {
        buf[this.#pos++] = 0xce;
        this.#view.setUint32(this.#pos, value);
        this.#pos += 4;
      }
    } else if (value >> 0 === value) {
      if (value >= -0x20) {
        buf[this.#pos++] = 0x100 + value;
      } else if (value >= -0x80) {
        buf[this.#pos++] = 0xd0;
        buf[this.#pos++] = value + 0x100;
      } else if (value >= -0x8000) {
        buf[this.#pos++] = 0xd1;
        this.#view.setInt16(this.#pos, value);
        this.#pos += 2;
      } else {
        buf[this.#pos++] = 0xd2;
        this.#view.setInt32(this.#pos, value);
        this.#pos += 4;
      }
    } else {
      buf[this.#pos++] = 0xcb;
      this.#view.setFloat64(this.#pos, value);
      this.#pos += 8;
    }
  }

  /** UTF-8 as msgpackr writes it (a lone surrogate as its three-byte form). */
  #writeString(value: string): void {
    const length = value.length;
    const headerSize = length < 0x20 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
    this.#ensure(headerSize + length * 3 + 4);
    const buf = this.#buf;
    const start = this.#pos + headerSize;
    let p = start;
    // msgpackr encodes long strings natively (a lone surrogate becomes U+FFFD), short ones in JS.
    if (length >= 0x40) p += utf8.encodeInto(value, buf.subarray(start)).written;
    else {for (let i = 0; i < length; i++) {
        let c1 = value.charCodeAt(i);
        if (c1 < 0x80) {
          buf[p++] = c1;
        } else if (c1 < 0x800) {
          buf[p++] = (c1 >> 6) | 0xc0;
          buf[p++] = (c1 & 0x3f) | 0x80;
        } else {
          let c2: number;
          if ((c1 & 0xfc00) === 0xd800 && ((c2 = value.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
            c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (c2 & 0x03ff);
            i++;
            buf[p++] = (c1 >> 18) | 0xf0;
            buf[p++] = ((c1 >> 12) & 0x3f) | 0x80;
            buf[p++] = ((c1 >> 6) & 0x3f) | 0x80;
            buf[p++] = (c1 & 0x3f) | 0x80;
          } else {
            buf[p++] = (c1 >> 12) | 0xe0;
            buf[p++] = ((c1 >> 6) & 0x3f) | 0x80;
            buf[p++] = (c1 & 0x3f) | 0x80;
          }
        }
      }}
    const bytes = p - start;
    const needed = bytes < 0x20 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5;
    if (needed !== headerSize) buf.copyWithin(this.#pos + needed, start, p);
    let h = this.#pos;
    if (needed === 1) {
      buf[h++] = 0xa0 | bytes;
    } else if (needed === 2) {
      buf[h++] = 0xd9;
      buf[h++] = bytes;
    } else if (needed === 3) {
      buf[h++] = 0xda;
      buf[h++] = bytes >> 8;
      buf[h++] = bytes & 0xff;
    } else {
      buf[h++] = 0xdb;
      this.#view.setUint32(h, bytes);
      h += 4;
    }
    this.#pos = h + bytes;
  }

  /** Room for `n` more bytes: else a new block, and the output so far moves to its start. */
  #ensure(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const written = this.#pos - this.#start;
    let size = BLOCK_BYTES;
    while (size < (written + n) * 2) size *= 2;
    const block = new Uint8Array(size);
    block.set(this.#buf.subarray(this.#start, this.#pos));
    this.#buf = block;
    this.#view = new DataView(block.buffer);
    this.#start = 0;
    this.#pos = written;
  }
}
