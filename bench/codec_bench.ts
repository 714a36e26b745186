/**
 * Codec benchmark: how many events a second one core encodes and decodes, in batches as the
 * log stores them, and how fast records are checksummed. Goal: at least 1,000,000 events/s
 * each way (so replaying a million-event log takes about a second).
 *
 * Run alone with `deno run -A bench/codec_bench.ts [--json]`.
 *
 * @module
 */
import { EventCodec, MemoryStructureStore } from "../events/codec.ts";
import { crc32c } from "../events/crc32c.ts";
import type { Batch, EventOf, ShoalEvent } from "../events/schema.ts";

/** Options of {@linkcode runCodecBench}. */
export interface CodecBenchOptions {
  /** Also print the results as one JSON object on the last line. */
  json: boolean;
  /** Milliseconds per timed round (default 200; 5 rounds, the best counts). */
  roundMs?: number;
}

const ROUNDS = 5;

function id(n: number): string {
  return n.toString(36).padStart(25, "0");
}

function statusReported(n: number): EventOf<"TaskStatusReported"> {
  return {
    type: "TaskStatusReported",
    v: 1,
    data: {
      id: id(n),
      status: {
        state: 512,
        timestamp: 1_700_000_000_000 + n,
        message: "started",
        err: "",
        runtimeId: `pid:${10_000 + n}`,
      },
    },
    meta: { by: "agent:" + id(7), reason: "status report", cause: 1_000 + n },
  };
}

function taskCreated(n: number): EventOf<"TaskCreated"> {
  return {
    type: "TaskCreated",
    v: 1,
    data: {
      id: id(n),
      serviceId: id(42),
      slot: n % 1_000 + 1,
      nodeId: "",
      specVersion: 3,
      desiredState: 512,
      attempt: 0,
      startAfter: 0,
    },
    meta: { by: "orchestrator", reason: "scale web to 1000", cause: 77, expect: 12 },
  };
}

/** `count` batches of `size` events, half TaskStatusReported and half TaskCreated. */
function batches(count: number, size: number): Batch[] {
  const out: Batch[] = [];
  for (let b = 0; b < count; b++) {
    const events: ShoalEvent[] = [];
    for (let i = 0; i < size; i++) {
      const n = b * size + i;
      events.push(n % 2 ? statusReported(n) : taskCreated(n));
    }
    out.push({ at: 1_700_000_000_000 + b, by: "orchestrator", events });
  }
  return out;
}

/** Best rate (units per second) of `ROUNDS` rounds of about `roundMs` each. */
function rate(roundMs: number, unitsPerCall: number, call: () => void): number {
  // Warm up while finding how many calls fill a round.
  let calls = 1;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) call();
    const ms = performance.now() - start;
    if (ms >= roundMs / 4) {
      calls = Math.max(1, Math.round((calls * roundMs) / ms));
      break;
    }
    calls *= 2;
  }
  let best = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) call();
    const seconds = (performance.now() - start) / 1000;
    best = Math.max(best, (calls * unitsPerCall) / seconds);
  }
  return best;
}

/** Encode and decode throughput of one codec over `data`, plus bytes per event. */
function measure(codec: EventCodec, data: Batch[], roundMs: number) {
  const events = data.reduce((sum, b) => sum + b.events.length, 0);
  const encoded = data.map((b) => codec.encodeBatch(b));
  let sink = 0;
  const encode = rate(roundMs, events, () => {
    for (const b of data) sink += codec.encodeBatch(b).length;
  });
  const decode = rate(roundMs, events, () => {
    for (const bytes of encoded) sink += codec.decodeBatch(bytes).events.length;
  });
  if (sink < 0) throw new Error("unreachable");
  const bytes = encoded.reduce((sum, b) => sum + b.length, 0);
  return { encode, decode, bytesPerEvent: bytes / events };
}

/** The same figures for JSON.stringify + TextEncoder and back: the baseline to beat. */
function measureJson(data: Batch[], roundMs: number) {
  const events = data.reduce((sum, b) => sum + b.events.length, 0);
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const encoded = data.map((b) => encoder.encode(JSON.stringify(b)));
  let sink = 0;
  const encode = rate(roundMs, events, () => {
    for (const b of data) sink += encoder.encode(JSON.stringify(b)).length;
  });
  const decode = rate(roundMs, events, () => {
    for (const bytes of encoded) sink += JSON.parse(decoder.decode(bytes)).events.length;
  });
  if (sink < 0) throw new Error("unreachable");
  const bytes = encoded.reduce((sum, b) => sum + b.length, 0);
  return { encode, decode, bytesPerEvent: bytes / events };
}

/**
 * Runs the benchmark, prints a table (and, with `json`, a JSON object on the last line) and
 * returns the figures: events/s for encode and decode in the shared-structure and inline
 * formats, at 100 and at 1 event per batch, bytes per event, the same for JSON, and CRC32C
 * MB/s.
 */
export function runCodecBench(options: CodecBenchOptions): Promise<Record<string, number>> {
  const roundMs = options.roundMs ?? 200;
  const large = batches(100, 100);
  const single = batches(2_000, 1);
  const shared = new EventCodec({ store: new MemoryStructureStore() });
  const inline = new EventCodec();

  const s100 = measure(shared, large, roundMs);
  const i100 = measure(inline, large, roundMs);
  const s1 = measure(shared, single, roundMs);
  const i1 = measure(inline, single, roundMs);
  const json = measureJson(large, roundMs);

  const block = new Uint8Array(1 << 20).map((_, i) => i * 31);
  let sink = 0;
  const crcMBps = rate(roundMs, 1, () => sink ^= crc32c(block));
  if (sink === 0.5) throw new Error("unreachable");

  const results: Record<string, number> = {
    codec_encode_events_per_s: Math.round(s100.encode),
    codec_decode_events_per_s: Math.round(s100.decode),
    codec_bytes_per_event: round1(s100.bytesPerEvent),
    codec_inline_encode_events_per_s: Math.round(i100.encode),
    codec_inline_decode_events_per_s: Math.round(i100.decode),
    codec_inline_bytes_per_event: round1(i100.bytesPerEvent),
    codec_batch1_encode_events_per_s: Math.round(s1.encode),
    codec_batch1_decode_events_per_s: Math.round(s1.decode),
    codec_batch1_bytes_per_event: round1(s1.bytesPerEvent),
    codec_inline_batch1_encode_events_per_s: Math.round(i1.encode),
    codec_inline_batch1_decode_events_per_s: Math.round(i1.decode),
    codec_inline_batch1_bytes_per_event: round1(i1.bytesPerEvent),
    json_encode_events_per_s: Math.round(json.encode),
    json_decode_events_per_s: Math.round(json.decode),
    json_bytes_per_event: round1(json.bytesPerEvent),
    crc32c_mb_per_s: Math.round(crcMBps),
  };

  const rows = [
    ["shared structures, 100/batch", s100],
    ["inline structures, 100/batch", i100],
    ["shared structures, 1/batch", s1],
    ["inline structures, 1/batch", i1],
    ["JSON + UTF-8, 100/batch (for comparison)", json],
  ] as const;
  const lines = [
    "codec (TaskStatusReported + TaskCreated)   encode ev/s   decode ev/s   bytes/event",
    ...rows.map(([label, r]) =>
      label.padEnd(41) + fmt(r.encode).padStart(13) + fmt(r.decode).padStart(14) +
      r.bytesPerEvent.toFixed(1).padStart(14)
    ),
    `crc32c: ${fmt(crcMBps)} MB/s`,
  ];
  console.log(lines.join("\n"));
  if (options.json) console.log(JSON.stringify(results));
  return Promise.resolve(results);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

if (import.meta.main) await runCodecBench({ json: Deno.args.includes("--json") });
