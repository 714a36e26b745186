import assert from "node:assert/strict";
import fc from "fast-check";
import { Packr, Unpackr } from "msgpackr";
import { EventCodec, MemoryStructureStore } from "./codec.ts";
import { RecordWriter } from "./record_writer.ts";

const NO_HEADER = new Uint8Array(0);

/** A copy of msgpackr's output as a plain Uint8Array (it returns a Node Buffer). */
function plain(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/** `value` with every -0 made 0, as msgpack stores it. */
function positiveZero<T>(value: T): T {
  if (Object.is(value, -0)) return 0 as T;
  if (Array.isArray(value)) return value.map(positiveZero) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, positiveZero(v)])) as T;
  }
  return value;
}

/** The distinct key lists of the objects in `value`. */
function keyLists(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => keyLists(v, into));
  else if (value !== null && typeof value === "object") {
    into.add(JSON.stringify(Object.keys(value)));
    Object.values(value).forEach((v) => keyLists(v, into));
  }
  return into;
}

/** The inline codec's msgpackr settings (events/codec.ts). */
function inlinePackr(): Packr {
  return new Packr({
    useRecords: true,
    useToJSON: false,
    mapsAsObjects: true,
    maxOwnStructures: 64,
  });
}

function event(type: string, data: unknown, meta: unknown = { by: "o", reason: "r" }) {
  return { type, v: 1, data, meta };
}

/** Values the writer handles: what JSON has, with any string and any number. */
const leaf = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ minLength: 60, maxLength: 300 }),
  fc.string({ unit: "grapheme", maxLength: 90 }),
  fc.integer(),
  fc.integer({ min: -70_000, max: 70_000 }),
  fc.double(),
  fc.constantFrom(0, -0, 31, 63, 64, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 1.7e12),
  fc.boolean(),
  fc.constant(null),
);
const keys = fc.constantFrom("id", "state", "message", "labels", "a", "b", "ünï", "");
const value = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: "small" }, leaf, tie("array"), tie("object")),
  array: fc.array(tie("value"), { maxLength: 20 }),
  object: fc.dictionary(keys, tie("value"), { maxKeys: 5, noNullPrototype: true }),
})).value;
const events = fc.array(
  fc.record({ type: fc.constantFrom("A", "B", "TaskCreated"), data: value }).map((e) =>
    event(e.type, e.data)
  ),
  { minLength: 1, maxLength: 30 },
);

Deno.test("record writer: writes msgpackr's bytes for any batch, inline (property)", () => {
  const writer = new RecordWriter();
  const packr = inlinePackr();
  const unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true });
  fc.assert(
    fc.property(events, (list) => {
      const batch = { at: 1, by: "o", events: list };
      const mine = writer.write(batch, NO_HEADER);
      if (mine === undefined) {
        // Only for more shapes than one inline batch may define (msgpackr then recycles ids).
        assert.ok(keyLists(batch).size > 64, "the writer refused a batch of plain values");
        return;
      }
      assert.deepEqual(mine, plain(packr.pack(batch)));
      assert.deepEqual(unpackr.unpack(mine), positiveZero(batch));
    }),
    { numRuns: 300 },
  );
});

Deno.test("record writer: shared ids, one and two bytes, and plain maps for unshared shapes", () => {
  // 40 structures: ids past 0x60 take two bytes when more than 32 may be shared.
  const shared = Array.from({ length: 40 }, (_, i) => [`k${i}`, "x"]);
  shared.push(["at", "by", "events"], ["type", "v", "data", "meta"], ["by", "reason"]);
  const options = {
    getStructures: () => shared.map((k) => [...k]),
    maxSharedStructures: 512,
    maxOwnStructures: 0,
    useRecords: true,
    useToJSON: false,
    mapsAsObjects: true,
  };
  const packr = new Packr({ ...options, shouldShareStructure: () => false });
  const writer = new RecordWriter({ shared, maxSharedStructures: 512, shouldShare: () => false });
  const data = [{ k0: 1, x: "one byte" }, { k39: 2, x: "two bytes" }, { free: "plain map" }];
  const batch = { at: 5, by: "o", events: data.map((d) => event("T", d)) };
  const mine = writer.write(batch, new Uint8Array([9]));
  assert.ok(mine);
  assert.equal(mine[0], 9);
  assert.deepEqual(mine.subarray(1), plain(packr.pack(batch)));
  assert.deepEqual(packr.unpack(mine.subarray(1)), batch); // the codec decodes with its Packr
});

Deno.test("record writer: refuses what msgpackr must write, and then nothing is emitted", () => {
  const shared = [["at", "by", "events"], ["type", "v", "data", "meta"], ["by", "reason"]];
  const writer = new RecordWriter({ shared, maxSharedStructures: 512 });
  const ok = { at: 1, by: "o", events: [event("T", ["plain"])] };
  const first = writer.write(ok, NO_HEADER);
  assert.ok(first);
  const before = [...first];
  for (
    const bad of [
      event("T", { newShape: 1 }), // would become a shared structure
      event("T", [undefined]),
      event("T", [new Uint8Array(2)]),
      event("T", [10n]),
      event("T", [new Map()]),
      event("T", [new Date(0)]),
    ]
  ) {
    assert.equal(writer.write({ at: 1, by: "o", events: [bad] }, NO_HEADER), undefined);
  }
  assert.deepEqual([...first], before, "a refused batch overwrote an earlier output");
  assert.deepEqual(writer.write(ok, NO_HEADER), first);
  // More than 64 inline shapes in one batch: msgpackr recycles ids, the writer leaves it to it.
  const many = Array.from({ length: 70 }, (_, i) => event("T", { [`k${i}`]: i }));
  assert.equal(new RecordWriter().write({ at: 1, by: "o", events: many }, NO_HEADER), undefined);
});

Deno.test("record writer: outputs are views that later outputs never overwrite", () => {
  const writer = new RecordWriter();
  const packr = inlinePackr();
  const outputs: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < 3_000; i++) {
    const long = "x".repeat(i % 7 === 0 ? 20_000 : i % 50);
    const batch = { at: i, by: "o", events: [event("T", { id: `t${i}`, long })] };
    outputs.push([writer.write(batch, NO_HEADER)!, plain(packr.pack(batch))]);
  }
  for (const [mine, expected] of outputs) assert.deepEqual(mine, expected);
});

Deno.test("codec: encodeBatch's fast path writes what msgpackr writes (property)", () => {
  const text = fc.string({ maxLength: 30 });
  const hot = fc.oneof(
    fc.record({ id: text, state: fc.nat(1024), t: fc.double(), message: text, err: text }).map((
      r,
    ) => ({
      type: "TaskStatusReported",
      v: 1,
      data: {
        id: r.id,
        status: { state: r.state, timestamp: r.t, message: r.message, err: r.err },
      },
      meta: { by: "agent:n1", reason: "status report", cause: r.state },
    })),
    fc.record({
      id: text,
      slot: fc.nat(),
      labels: fc.dictionary(text.filter((k) => k !== "__proto__"), text, {
        maxKeys: 3,
        noNullPrototype: true,
      }),
    })
      .map((r) => ({
        type: "TaskCreated",
        v: 1,
        data: { id: r.id, serviceId: "s", slot: r.slot, nodeId: "", specVersion: 1 },
        meta: { by: "orchestrator", reason: "scale", expect: 3, labels: r.labels },
      })),
  );
  // 40 structures already stored: the hot shapes get two-byte ids.
  const stored = Array.from({ length: 40 }, (_, i) => ["id", `k${i}`]);
  const codecs = [
    new EventCodec({ store: new MemoryStructureStore() }),
    new EventCodec({ store: new MemoryStructureStore(stored) }),
    new EventCodec(),
  ];
  for (const codec of codecs) {
    fc.assert(
      fc.property(fc.array(hot, { minLength: 1, maxLength: 40 }), (list) => {
        const batch = { at: 1_700_000_000_000, by: "o", events: list } as never;
        codec.encodeBatch(batch); // the first may add shared structures (through msgpackr)
        const fast = codec.encodeBatch(batch);
        assert.deepEqual(fast, codec.encode(batch)); // msgpackr's bytes, header included
        assert.deepEqual(codec.decodeBatch(fast), positiveZero(batch));
      }),
      { numRuns: 200 },
    );
  }
});
