/**
 * Docker's multiplexed log stream (`application/vnd.docker.multiplexed-stream`, served as
 * `application/vnd.docker.raw-stream` before API 1.42): each frame is an 8-byte header (the stream:
 * 1 stdout, 2 stderr, 3 the daemon's own errors; three zero bytes; the payload's length, 32-bit
 * big-endian) and the payload, one line of output here.
 *
 * A line's payload is `[TIMESTAMP ][DETAILS ]TEXT\n`: the timestamp in Go's `RFC3339NanoFixed`
 * (`2025-01-02T03:04:05.678000000Z`) with `timestamps`, and with `details` the line's context as
 * `key=value` pairs, sorted, query-escaped and joined by commas (what `docker service logs` parses
 * to print `web.1.abc@node`).
 *
 * @module
 */

/** Which stream a frame belongs to. */
export const StreamKind = { stdout: 1, stderr: 2, systemerr: 3 } as const;
/** Which stream a frame belongs to. */
export type StreamKind = (typeof StreamKind)[keyof typeof StreamKind];

const encoder = new TextEncoder();

/** One frame: the header, then `payload`. */
export function encodeFrame(kind: StreamKind, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === "string" ? encoder.encode(payload) : payload;
  const frame = new Uint8Array(8 + bytes.length);
  frame[0] = kind;
  new DataView(frame.buffer).setUint32(4, bytes.length);
  frame.set(bytes, 8);
  return frame;
}

/** A time (ms since the epoch) as Go's `RFC3339NanoFixed` in UTC: nine fraction digits. */
export function rfc3339NanoFixed(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, -1)}000000Z`;
}

/** Go's `url.QueryEscape`: what Docker applies to each key and value of a line's details. */
export function queryEscape(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, "+").replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Details as Docker writes them: `k=v,k=v`, sorted by key, each part query-escaped. */
export function formatDetails(attrs: Readonly<Record<string, string>>): string {
  return Object.keys(attrs).sort().map((k) => `${queryEscape(k)}=${queryEscape(attrs[k])}`)
    .join(",");
}

/** Parses details written by {@linkcode formatDetails} (Docker's `ParseLogDetails`). */
export function parseDetails(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (text === "") return out;
  for (const pair of text.split(",")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new SyntaxError(`invalid details format: "${pair}" is not key=value`);
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, " "));
    out[decode(pair.slice(0, eq))] = decode(pair.slice(eq + 1));
  }
  return out;
}

/** One decoded frame. */
export interface StreamFrame {
  kind: StreamKind;
  payload: Uint8Array;
}

/**
 * Splits a multiplexed stream into its frames, whatever the chunk boundaries. Throws on a
 * header whose stream is not 1, 2 or 3 (then the stream is not multiplexed).
 */
export async function* demultiplex(
  body: AsyncIterable<Uint8Array>,
): AsyncGenerator<StreamFrame> {
  let buf = new Uint8Array(0);
  for await (const chunk of body) {
    const joined = new Uint8Array(buf.length + chunk.length);
    joined.set(buf);
    joined.set(chunk, buf.length);
    buf = joined;
    let at = 0;
    while (buf.length - at >= 8) {
      const kind = buf[at];
      if (kind !== 1 && kind !== 2 && kind !== 3) {
        throw new SyntaxError(`unexpected stream id ${kind} in a multiplexed log stream`);
      }
      const size = new DataView(buf.buffer, buf.byteOffset + at + 4, 4).getUint32(0);
      if (buf.length - at - 8 < size) break;
      yield { kind, payload: buf.slice(at + 8, at + 8 + size) };
      at += 8 + size;
    }
    buf = buf.slice(at);
  }
  if (buf.length > 0) throw new SyntaxError("the log stream ended in the middle of a frame");
}
