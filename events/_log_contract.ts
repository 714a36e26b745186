/**
 * The one test suite every {@linkcode EventLog} passes: MemoryLog now, the Raft log later
 * (DESIGN.md: one suite per interface, run against every implementation). Call
 * `testEventLog(name, makeLog)` from the implementation's `_test.ts` file.
 *
 * @module
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type EventLog, LogClosedError, type LogEntry } from "./log.ts";
import type { Batch, EventOf } from "./schema.ts";

/** Options of {@linkcode testEventLog}. */
export interface EventLogContractOptions {
  /** Decodes an entry's bytes, to check they hold the entry's batch. */
  decode?: (bytes: Uint8Array) => Batch;
  /** How long a test waits for an entry to reach a subscriber before failing (default 5 s). */
  timeoutMs?: number;
}

/** A batch of `count` small events, numbered from `n` so batches differ. */
export function sampleBatch(n: number, count = 1): Batch {
  const events: EventOf<"TaskDesiredStateChanged">[] = [];
  for (let i = 0; i < count; i++) {
    events.push({
      type: "TaskDesiredStateChanged",
      v: 1,
      data: { id: `task${n}x${i}`, desiredState: 640 },
      meta: { by: "orchestrator", reason: `batch ${n}`, cause: n },
    });
  }
  return { at: 1_700_000_000_000 + n, by: "orchestrator", events };
}

/** Registers the EventLog contract tests, each on a fresh log from `makeLog`. */
export function testEventLog(
  name: string,
  makeLog: () => EventLog | Promise<EventLog>,
  options: EventLogContractOptions = {},
): void {
  const timeoutMs = options.timeoutMs ?? 5_000;

  const test = (title: string, body: (log: EventLog) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const log = await makeLog();
      try {
        await body(log);
      } finally {
        await log.close();
      }
    });

  /**
   * Collects entry indexes from `from` until `until` arrives or the iteration ends. Throws
   * after `timeoutMs`, so a stuck log fails the test instead of hanging it.
   */
  const collect = async (
    log: EventLog,
    from: number,
    until = Infinity,
    signal?: AbortSignal,
  ): Promise<number[]> => {
    const seen: number[] = [];
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), timeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    try {
      for await (const entry of log.entries(from, { signal: both })) {
        seen.push(entry.index);
        if (entry.index >= until) break;
      }
    } finally {
      clearTimeout(timer);
    }
    if (timeout.signal.aborted) {
      throw new Error(`Entries from ${from}: only ${seen} after ${timeoutMs} ms`);
    }
    return seen;
  };

  const range = (from: number, to: number) =>
    Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

  /** Lets other promises and timers run. */
  const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

  test("starts empty, numbered from 1", async (log) => {
    assert.equal(log.firstIndex(), 1);
    assert.equal(log.lastIndex(), 0);
    assert.deepEqual(log.read(1), []);
    await Promise.resolve();
  });

  test("appends one entry per batch, numbered 1, 2, 3...", async (log) => {
    const batches = [sampleBatch(1), sampleBatch(2, 5), sampleBatch(3, 2)];
    const indexes = [];
    for (const batch of batches) indexes.push(await log.append(batch));
    assert.deepEqual(indexes, [1, 2, 3]);
    assert.equal(log.lastIndex(), 3);
    const entries = log.read(1);
    assert.deepEqual(entries.map((e) => e.index), [1, 2, 3]);
    assert.deepEqual(entries.map((e) => e.batch), batches);
    for (const entry of entries) {
      assert.ok(entry.term >= 1, "a term is at least 1");
      assert.ok(entry.bytes instanceof Uint8Array && entry.bytes.length > 0);
      if (options.decode) assert.deepEqual(options.decode(entry.bytes), entry.batch);
    }
    assert.ok(entries[0].term <= entries[1].term && entries[1].term <= entries[2].term);
  });

  test("read returns the entries in [from, to], clamped to the last index", async (log) => {
    for (let n = 1; n <= 5; n++) await log.append(sampleBatch(n));
    const indexes = (entries: LogEntry[]) => entries.map((e) => e.index);
    assert.deepEqual(indexes(log.read(2, 4)), [2, 3, 4]);
    assert.deepEqual(indexes(log.read(3, 3)), [3]);
    assert.deepEqual(indexes(log.read(4)), [4, 5]);
    assert.deepEqual(indexes(log.read(4, 99)), [4, 5]);
    assert.deepEqual(log.read(6), []);
    assert.deepEqual(log.read(4, 3), []);
    assert.throws(() => log.read(0), RangeError);
    await assert.rejects(collect(log, 0), RangeError);
  });

  test("concurrent appends get distinct indexes in call order", async (log) => {
    const batches = range(1, 50).map((n) => sampleBatch(n, 1 + (n % 5)));
    const indexes = await Promise.all(batches.map((batch) => log.append(batch)));
    assert.deepEqual(indexes, range(1, 50));
    assert.deepEqual(log.read(1).map((e) => e.batch), batches);
  });

  test("keeps entries as written: later changes to the batch do not reach the log", async (log) => {
    const batch = sampleBatch(1, 3);
    const index = await log.append(batch);
    const bytes = log.read(index)[0].bytes.slice();
    batch.events[0].meta.reason = "changed afterwards";
    batch.events.pop();
    const [entry] = log.read(index);
    assert.deepEqual(entry.batch, sampleBatch(1, 3));
    assert.deepEqual(entry.bytes, bytes);
  });

  test("refuses a batch the codec refuses, without taking an index", async (log) => {
    await log.append(sampleBatch(1));
    await assert.rejects(log.append(sampleBatch(2, 501)), RangeError);
    await assert.rejects(log.append({ at: 0, by: "x", events: [] }), RangeError);
    assert.equal(log.lastIndex(), 1);
    assert.equal(await log.append(sampleBatch(3)), 2);
  });

  test("entries() yields committed entries, then live ones, each once in order", async (log) => {
    for (let n = 1; n <= 3; n++) await log.append(sampleBatch(n));
    const seen: LogEntry[] = [];
    const done = (async () => {
      for await (const entry of log.entries(1)) {
        seen.push(entry);
        if (entry.index === 10) break;
      }
    })();
    for (let n = 4; n <= 10; n++) {
      if (n % 2) await tick();
      await log.append(sampleBatch(n));
    }
    await done;
    assert.deepEqual(seen.map((e) => e.index), range(1, 10));
    assert.deepEqual(seen.map((e) => e.batch), range(1, 10).map((n) => sampleBatch(n)));
    assert.deepEqual(seen.map((e) => e.bytes), log.read(1).map((e) => e.bytes));
  });

  test("entries() can start mid-log or beyond the end", async (log) => {
    for (let n = 1; n <= 5; n++) await log.append(sampleBatch(n));
    const middle = collect(log, 3, 6);
    const future = collect(log, 8, 9);
    await tick();
    for (let n = 6; n <= 9; n++) await log.append(sampleBatch(n));
    assert.deepEqual(await middle, [3, 4, 5, 6]);
    assert.deepEqual(await future, [8, 9]);
  });

  test("several subscribers each see every entry once", async (log) => {
    const early = collect(log, 1, 12);
    for (let n = 1; n <= 4; n++) await log.append(sampleBatch(n));
    const late = collect(log, 1, 12);
    const fromFour = collect(log, 4, 12);
    for (let n = 5; n <= 12; n++) {
      await log.append(sampleBatch(n));
      await tick();
    }
    assert.deepEqual(await early, range(1, 12));
    assert.deepEqual(await late, range(1, 12));
    assert.deepEqual(await fromFour, range(4, 12));
  });

  test("aborting ends an iteration cleanly, also while it waits", async (log) => {
    await log.append(sampleBatch(1));
    const controller = new AbortController();
    const waiting = collect(log, 1, Infinity, controller.signal);
    await tick();
    controller.abort();
    assert.deepEqual(await waiting, [1]);

    const aborted = AbortSignal.abort();
    assert.deepEqual(await collect(log, 1, Infinity, aborted), []);
    // The log goes on for others.
    const other = collect(log, 1, 2);
    await log.append(sampleBatch(2));
    assert.deepEqual(await other, [1, 2]);
  });

  test("leaving a loop early leaves the log usable", async (log) => {
    for (let n = 1; n <= 3; n++) await log.append(sampleBatch(n));
    for await (const entry of log.entries(1)) {
      assert.equal(entry.index, 1);
      break;
    }
    assert.equal(await log.append(sampleBatch(4)), 4);
    assert.deepEqual(await collect(log, 2, 4), [2, 3, 4]);
  });

  test("close ends iterations cleanly, refuses appends, and is idempotent", async (log) => {
    await log.append(sampleBatch(1));
    const waiting = collect(log, 1);
    await tick();
    await log.close();
    assert.deepEqual(await waiting, [1]);
    await assert.rejects(log.append(sampleBatch(2)), LogClosedError);
    assert.deepEqual(await collect(log, 1), []);
    await log.close();
  });

  Deno.test(`${name}: subscribers see exactly their range under any interleaving`, async () => {
    type Op = { kind: "append"; events: number } | { kind: "subscribe"; from: number } | {
      kind: "yield";
    };
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        arbitrary: fc.record({
          kind: fc.constant("append" as const),
          events: fc.integer({ min: 1, max: 4 }),
        }),
        weight: 4,
      },
      {
        arbitrary: fc.record({
          kind: fc.constant("subscribe" as const),
          from: fc.integer({ min: 1, max: 12 }),
        }),
        weight: 1,
      },
      { arbitrary: fc.constant({ kind: "yield" as const }), weight: 2 },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        const log = await makeLog();
        const controller = new AbortController();
        const subscribers: { from: number; seen: Promise<number[]>; got: number[] }[] = [];
        try {
          for (const o of ops) {
            if (o.kind === "append") await log.append(sampleBatch(log.lastIndex() + 1, o.events));
            else if (o.kind === "yield") await tick();
            else {
              const got: number[] = [];
              const seen = (async () => {
                for await (const e of log.entries(o.from, { signal: controller.signal })) {
                  got.push(e.index);
                }
                return got;
              })();
              subscribers.push({ from: o.from, seen, got });
            }
          }
          const last = log.lastIndex();
          const deadline = Date.now() + timeoutMs;
          while (subscribers.some((s) => s.from <= last && s.got.at(-1) !== last)) {
            if (Date.now() > deadline) throw new Error("a subscriber fell behind");
            await tick();
          }
          controller.abort();
          for (const s of subscribers) assert.deepEqual(await s.seen, range(s.from, last));
        } finally {
          controller.abort();
          await log.close();
        }
      }),
      { numRuns: 60 },
    );
  });
}
