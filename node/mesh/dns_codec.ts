/**
 * A small DNS message codec (RFC 1035), enough for the mesh's resolver: it decodes queries
 * (names with or without compression pointers) and whole responses (for tests and tools), and
 * encodes responses with A and AAAA records. Names in what it encodes are written in full; the
 * answers point back at the question's name (`0xC00C`) only when they repeat it.
 *
 * @module
 */

/** Record types the resolver knows by name. */
export const DnsType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  ANY: 255,
} as const;
/** The Internet class. */
export const CLASS_IN = 1;

/** Response codes. */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

/** One question. */
export interface DnsQuestion {
  /** Lower-case, without the final dot. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

/** One resource record. */
export interface DnsRecord {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly ttl: number;
  /** The record's data as sent. */
  readonly data: Uint8Array;
}

/** A DNS message. */
export interface DnsMessage {
  readonly id: number;
  /** True for a response. */
  readonly qr: boolean;
  readonly opcode: number;
  /** Authoritative answer. */
  readonly aa: boolean;
  /** Truncated. */
  readonly tc: boolean;
  /** Recursion desired. */
  readonly rd: boolean;
  /** Recursion available. */
  readonly ra: boolean;
  readonly rcode: number;
  readonly questions: readonly DnsQuestion[];
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
  readonly additionals: readonly DnsRecord[];
}

/** A malformed message. */
export class DnsFormatError extends Error {
  /** Says what is wrong with the message. */
  constructor(message: string) {
    super(message);
    this.name = "DnsFormatError";
  }
}

/** Reads a (possibly compressed) name at `offset`; returns it and the offset after it. */
function readName(buf: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (pos >= buf.length) throw new DnsFormatError("a name runs past the end of the message");
    const len = buf[pos];
    if (len === 0) {
      pos += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsFormatError("a compression pointer is cut short");
      if (++jumps > 64) throw new DnsFormatError("compression pointers loop");
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | buf[pos + 1];
      continue;
    }
    if ((len & 0xc0) !== 0) throw new DnsFormatError(`unknown label type 0x${len.toString(16)}`);
    if (pos + 1 + len > buf.length) throw new DnsFormatError("a label runs past the end");
    length += len + 1;
    if (length > 255) throw new DnsFormatError("a name is longer than 255 bytes");
    let label = "";
    for (let i = pos + 1; i <= pos + len; i++) label += String.fromCharCode(buf[i]);
    labels.push(label.toLowerCase());
    pos += 1 + len;
  }
  return { name: labels.join("."), next: next < 0 ? pos : next };
}

function u16(buf: Uint8Array, pos: number): number {
  if (pos + 2 > buf.length) throw new DnsFormatError("the message is cut short");
  return (buf[pos] << 8) | buf[pos + 1];
}

function u32(buf: Uint8Array, pos: number): number {
  return u16(buf, pos) * 65536 + u16(buf, pos + 2);
}

/** Decodes a message; throws {@linkcode DnsFormatError} when it is malformed. */
export function decodeDnsMessage(buf: Uint8Array): DnsMessage {
  if (buf.length < 12) throw new DnsFormatError("a message is at least 12 bytes");
  const flags = u16(buf, 2);
  const counts = [u16(buf, 4), u16(buf, 6), u16(buf, 8), u16(buf, 10)];
  let pos = 12;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const { name, next } = readName(buf, pos);
    questions.push({ name, type: u16(buf, next), class: u16(buf, next + 2) });
    pos = next + 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]; i++) {
      const { name, next } = readName(buf, pos);
      const len = u16(buf, next + 8);
      if (next + 10 + len > buf.length) throw new DnsFormatError("record data runs past the end");
      sections[s].push({
        name,
        type: u16(buf, next),
        class: u16(buf, next + 2),
        ttl: u32(buf, next + 4),
        data: buf.slice(next + 10, next + 10 + len),
      });
      pos = next + 10 + len;
    }
  }
  return {
    id: u16(buf, 0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    rcode: flags & 0xf,
    questions,
    answers: sections[0],
    authorities: sections[1],
    additionals: sections[2],
  };
}

/** A growable byte buffer. */
class Writer {
  buf = new Uint8Array(512);
  len = 0;
  #ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  u8(v: number): void {
    this.#ensure(1);
    this.buf[this.len++] = v & 0xff;
  }
  u16(v: number): void {
    this.u8(v >> 8);
    this.u8(v);
  }
  u32(v: number): void {
    this.u16(Math.floor(v / 65536));
    this.u16(v % 65536);
  }
  bytes(b: Uint8Array): void {
    this.#ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  name(name: string, questionName: string | undefined): void {
    if (questionName !== undefined && name === questionName) {
      this.u16(0xc00c); // the first question's name, right after the header
      return;
    }
    if (name !== "") {
      for (const label of name.split(".")) {
        if (label.length === 0 || label.length > 63) {
          throw new DnsFormatError(`invalid label "${label}" in name "${name}"`);
        }
        this.u8(label.length);
        for (let i = 0; i < label.length; i++) this.u8(label.charCodeAt(i));
      }
    }
    this.u8(0);
  }
}

/** Encodes a message. */
export function encodeDnsMessage(m: DnsMessage): Uint8Array {
  const w = new Writer();
  w.u16(m.id);
  w.u16(
    (m.qr ? 0x8000 : 0) | ((m.opcode & 0xf) << 11) | (m.aa ? 0x0400 : 0) | (m.tc ? 0x0200 : 0) |
      (m.rd ? 0x0100 : 0) | (m.ra ? 0x0080 : 0) | (m.rcode & 0xf),
  );
  w.u16(m.questions.length);
  w.u16(m.answers.length);
  w.u16(m.authorities.length);
  w.u16(m.additionals.length);
  for (const q of m.questions) {
    w.name(q.name, undefined);
    w.u16(q.type);
    w.u16(q.class);
  }
  const first = m.questions[0]?.name;
  for (const r of [...m.answers, ...m.authorities, ...m.additionals]) {
    w.name(r.name, first);
    w.u16(r.type);
    w.u16(r.class);
    w.u32(r.ttl);
    w.u16(r.data.length);
    w.bytes(r.data);
  }
  return w.buf.slice(0, w.len);
}

/** An IPv4 address's 4 bytes. */
export function ipv4Bytes(addr: string): Uint8Array {
  const parts = addr.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new RangeError(`not an IPv4 address: ${addr}`);
  }
  return new Uint8Array(parts);
}

/** An A record. */
export function aRecord(name: string, addr: string, ttl: number): DnsRecord {
  return { name, type: DnsType.A, class: CLASS_IN, ttl, data: ipv4Bytes(addr) };
}

/** The address an A record holds. */
export function aRecordAddr(record: DnsRecord): string {
  return [...record.data].join(".");
}

/** A query for `name` (what a stub resolver sends). */
export function dnsQuery(id: number, name: string, type: number = DnsType.A): DnsMessage {
  return {
    id,
    qr: false,
    opcode: 0,
    aa: false,
    tc: false,
    rd: true,
    ra: false,
    rcode: 0,
    questions: [{ name: name.toLowerCase().replace(/\.$/, ""), type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  };
}

/** The response to `query` with these answers (authoritative, recursion available). */
export function dnsResponse(
  query: DnsMessage,
  rcode: number,
  answers: readonly DnsRecord[] = [],
): DnsMessage {
  return {
    ...query,
    qr: true,
    aa: rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN,
    tc: false,
    ra: true,
    rcode,
    questions: query.questions.slice(0, 1),
    answers,
    authorities: [],
    additionals: [],
  };
}
