import assert from "node:assert/strict";
import fc from "fast-check";
import { Unpackr } from "msgpackr";
import {
  CorruptRecordError,
  DecodeError,
  EventCodec,
  InvalidBatchError,
  MemoryStructureStore,
  MissingStructuresError,
  openRecord,
  RECORD_CHECKSUM_BYTES,
  sealRecord,
  type Structures,
  type StructureStore,
} from "./codec.ts";
import { Batch, type EventOf, MAX_BATCH_BYTES, ServiceSpec, type ShoalEvent } from "./schema.ts";

const ID = "0123456789abcdefghijklmno";

function statusReported(i: number): EventOf<"TaskStatusReported"> {
  return {
    type: "TaskStatusReported",
    v: 1,
    data: {
      id: `task${i}`,
      status: { state: 512, timestamp: 1_700_000_000_000 + i, message: "started", err: "" },
    },
    meta: { by: "agent:node1", reason: "status report", cause: i },
  };
}

function taskCreated(i: number): EventOf<"TaskCreated"> {
  return {
    type: "TaskCreated",
    v: 1,
    data: {
      id: `task${i}`,
      serviceId: ID,
      slot: i,
      nodeId: "",
      specVersion: 1,
      desiredState: 512,
      attempt: 0,
      startAfter: 0,
    },
    meta: { by: "orchestrator", reason: "scale up", expect: 3 },
  };
}

function serviceCreated(labels: Record<string, string>): EventOf<"ServiceCreated"> {
  const spec = ServiceSpec.parse({
    name: "web",
    labels,
    task: { runtime: { kind: "process", command: "sleep", args: ["1000"] } },
  });
  return {
    type: "ServiceCreated",
    v: 1,
    data: { id: ID, spec },
    meta: { by: "user:create", reason: "" },
  };
}

function batch(events: ShoalEvent[], at = 1_700_000_000_000): Batch {
  return { at, by: "test", events };
}

/** A store that keeps what it saves as msgpack-free JSON text, as a database would. */
class JsonStore implements StructureStore {
  text: string | undefined;
  saves = 0;
  load(): Structures | undefined {
    return this.text === undefined ? undefined : JSON.parse(this.text);
  }
  save(structures: Structures): void {
    this.saves++;
    this.text = JSON.stringify(structures);
  }
}

Deno.test("codec: a batch round-trips, in shared and in inline format", () => {
  const b = batch([taskCreated(1), statusReported(1), serviceCreated({ tier: "front" })]);
  for (const codec of [new EventCodec({ store: new MemoryStructureStore() }), new EventCodec()]) {
    const bytes = codec.encodeBatch(b);
    assert.deepEqual(codec.decodeBatch(bytes), b);
    assert.deepEqual(codec.decodeBatchChecked(bytes), b);
  }
});

Deno.test("codec: bytes decode after a restart, also after structures were added later", () => {
  const store = new JsonStore();
  const first = new EventCodec({ store });
  const early = first.encodeBatch(batch([taskCreated(1), taskCreated(2)]));
  const known = first.sharedStructures;
  assert.ok(known > 0 && store.saves > 0, "the codec saved its structures");

  // Restart: a fresh codec sees only what the store holds.
  const restarted = new EventCodec({ store });
  assert.deepEqual(restarted.decodeBatch(early), batch([taskCreated(1), taskCreated(2)]));

  // Later writes bring new shapes; the store grows and old entries still decode.
  const late = restarted.encodeBatch(batch([statusReported(3), serviceCreated({})]));
  assert.ok(restarted.sharedStructures > known, "new shapes were shared");
  const again = new EventCodec({ store });
  assert.deepEqual(again.decodeBatch(early), batch([taskCreated(1), taskCreated(2)]));
  assert.deepEqual(again.decodeBatch(late), batch([statusReported(3), serviceCreated({})]));
  // The first codec, which never saw the new structures, loads them when it needs them.
  assert.deepEqual(first.decodeBatch(late), batch([statusReported(3), serviceCreated({})]));
});

Deno.test("codec: structures are durable before encode returns the bytes", () => {
  const store = new JsonStore();
  const codec = new EventCodec({ store });
  for (let i = 0; i < 20; i++) {
    const events = i % 2
      ? [statusReported(i)]
      : [taskCreated(i), serviceCreated({ [`k${i}`]: "" })];
    const bytes = codec.encodeBatch(batch(events));
    // Only what the store held when encode returned: nothing written later can help.
    const snapshot = new MemoryStructureStore(store.load() ?? []);
    assert.deepEqual(new EventCodec({ store: snapshot }).decodeBatch(bytes), batch(events));
  }
});

Deno.test("codec: a store that fails to save fails the encode, and the codec recovers", () => {
  const inner = new JsonStore();
  let fail = true;
  const store: StructureStore = {
    load: () => inner.load(),
    save(structures) {
      if (fail) throw new Error("disk full");
      inner.save(structures);
    },
  };
  const codec = new EventCodec({ store });
  assert.throws(() => codec.encodeBatch(batch([taskCreated(1)])), /disk full/);
  fail = false;
  const bytes = codec.encodeBatch(batch([taskCreated(1)]));
  assert.deepEqual(new EventCodec({ store: inner }).decodeBatch(bytes), batch([taskCreated(1)]));
});

Deno.test("codec: an empty store fails loudly instead of decoding garbage", () => {
  const written = new EventCodec({ store: new MemoryStructureStore() }).encodeBatch(
    batch([taskCreated(1), statusReported(1)]),
  );
  for (const codec of [new EventCodec({ store: new MemoryStructureStore() }), new EventCodec()]) {
    assert.throws(
      () => codec.decodeBatch(written),
      (e) =>
        e instanceof MissingStructuresError && e instanceof DecodeError &&
        /Entry uses \d+ shared record structures but/.test(e.message),
    );
  }
  // Why the header check exists: msgpackr on its own reads an unknown one-byte record id as a
  // plain integer. It happens to throw here, but nested records would silently decode wrong.
  let raw: unknown;
  try {
    raw = new Unpackr({ useRecords: true }).unpack(written.subarray(7));
  } catch {
    raw = undefined;
  }
  assert.notDeepEqual(raw, batch([taskCreated(1), statusReported(1)]));
});

Deno.test("codec: a store that is behind the log, or from another log, fails loudly", () => {
  const store = new MemoryStructureStore();
  const codec = new EventCodec({ store });
  codec.encodeBatch(batch([taskCreated(1)]));
  const backup = store.load()!;
  const late = codec.encodeBatch(batch([statusReported(2)]));

  const behind = new EventCodec({ store: new MemoryStructureStore(backup) });
  assert.throws(() => behind.decodeBatch(late), /but the structure store holds \d+/);

  // Same number of structures, different content: only the fingerprint can tell.
  const swapped = store.load()!;
  [swapped[0], swapped[1]] = [swapped[1], swapped[0]];
  const other = new EventCodec({ store: new MemoryStructureStore(swapped) });
  assert.throws(
    () => other.decodeBatch(late),
    (e) => e instanceof MissingStructuresError && /fingerprint/.test(e.message),
  );
});

Deno.test("codec: two codecs on one store do not overwrite each other's structures", () => {
  // msgpackr's isCompatible protocol: a codec that finds the store extended by another one
  // merges those structures and encodes again instead of saving over them.
  const store = new JsonStore();
  const a = new EventCodec({ store });
  const b = new EventCodec({ store });
  const written: [Uint8Array, Batch][] = [];
  const shapes: ((i: number) => ShoalEvent)[] = [
    taskCreated,
    statusReported,
    (i) => serviceCreated({ [`team${i}`]: "x" }),
    (i) => ({ ...statusReported(i), meta: { by: "dispatcher", reason: "" } }),
    (i) => ({
      ...taskCreated(i),
      data: { ...taskCreated(i).data, nodeId: "n" },
      meta: {} as never,
    }),
  ];
  for (let i = 0; i < 10; i++) {
    const codec = i % 2 ? b : a;
    const value = batch([shapes[i % shapes.length](i)]);
    written.push([codec.encodeBatch(value), value]);
  }
  const fresh = new EventCodec({ store });
  for (const [bytes, value] of written) {
    assert.deepEqual(fresh.decodeBatch(bytes), value);
    assert.deepEqual(a.decodeBatch(bytes), value);
    assert.deepEqual(b.decodeBatch(bytes), value);
  }
});

Deno.test("codec: inline bytes decode in any codec, with or without a store", () => {
  const b = batch([taskCreated(1), statusReported(2)]);
  const bytes = new EventCodec().encodeBatch(b);
  assert.equal(bytes[0], 2, "inline format");
  assert.deepEqual(new EventCodec().decodeBatch(bytes), b);
  assert.deepEqual(new EventCodec({ store: new MemoryStructureStore() }).decodeBatch(bytes), b);
});

Deno.test("codec: user-chosen keys (labels) do not take shared structures", () => {
  const store = new MemoryStructureStore();
  const codec = new EventCodec({ store });
  const labels = { "com.example.team": "payments", "com.example.tier": "gold" };
  // Twice: the second object of an unshared shape is where msgpackr 2.1.3 with per-message
  // two-byte structures wrote a reference it could not read back.
  const b = batch([serviceCreated(labels), serviceCreated(labels)]);
  const bytes = codec.encodeBatch(b);
  const keys = (store.load() ?? []).flat();
  assert.ok(keys.includes("spec"), "schema shapes are shared");
  assert.ok(!keys.includes("com.example.team"), "label keys are not");
  assert.deepEqual(new EventCodec({ store }).decodeBatch(bytes), b);
});

Deno.test("codec: batches too big or with too many or no events are refused", () => {
  const codec = new EventCodec();
  const big = (i: number) => ({
    ...statusReported(i),
    data: {
      id: `t${i}`,
      status: { state: 512 as const, timestamp: 0, message: "x".repeat(900_000), err: "" },
    },
  });
  assert.throws(
    () => codec.encodeBatch(batch([big(1), big(2)])),
    (e) =>
      e instanceof RangeError &&
      new RegExp(`encodes to \\d+ bytes, over MAX_BATCH_BYTES \\(${MAX_BATCH_BYTES}\\)`).test(
        e.message,
      ),
  );
  assert.ok(codec.encodeBatch(batch([big(1)])).length < MAX_BATCH_BYTES);
  const many = Array.from({ length: 501 }, (_, i) => taskCreated(i));
  assert.throws(() => codec.encodeBatch(batch(many)), /1 to 500 events; this one has 501/);
  assert.throws(() => codec.encodeBatch(batch([])), RangeError);
});

Deno.test("codec: decodeBatchChecked names the bad field; decodeBatch does not validate", () => {
  const codec = new EventCodec();
  const bad = statusReported(1) as unknown as { data: { status: { state: number } } };
  bad.data.status.state = 13;
  const bytes = codec.encode(batch([taskCreated(0), bad as unknown as ShoalEvent]));
  assert.equal(codec.decodeBatch(bytes).events.length, 2);
  assert.throws(
    () => codec.decodeBatchChecked(bytes),
    (e) =>
      e instanceof InvalidBatchError && e.message.includes("events[1].data.status.state") &&
      e.issues.length > 0,
  );
});

Deno.test("codec: generic values (snapshots) round-trip", () => {
  const snapshot = {
    index: 1234,
    big: 1_700_000_000_123,
    negative: -5,
    float: 0.1,
    text: "ünïcødé ✓ 🚢",
    none: null,
    yes: true,
    absent: undefined,
    bytes: new Uint8Array([1, 2, 3]),
    tasks: [["a", { state: 512, history: [1, 2, 3] }], ["b", { state: 640, history: [] }]],
    nested: Array.from({ length: 100 }, (_, i) => ({ [`k${i % 70}`]: i, shape: i })),
  };
  for (const codec of [new EventCodec({ store: new MemoryStructureStore() }), new EventCodec()]) {
    assert.deepEqual(codec.decode(codec.encode(snapshot)), snapshot);
    // Documented: a Map decodes as a plain object.
    assert.deepEqual(codec.decode(codec.encode({ m: new Map([["a", { state: 1 }]]) })), {
      m: { a: { state: 1 } },
    });
  }
});

Deno.test("codec: more shapes than one-byte ids and than maxSharedStructures still decode", () => {
  // Past 32 shared structures msgpackr uses two-byte record ids; past the cap, shapes are
  // written as maps. Both must survive a restart, with unshared shapes mixed in.
  const store = new MemoryStructureStore();
  const codec = new EventCodec({ store, maxSharedStructures: 100 });
  const fields = ["id", "state", "slot", "nodeId", "serviceId", "message", "timestamp", "err"];
  const written: [Uint8Array, unknown][] = [];
  for (let i = 0; i < 300; i++) {
    // Subsets of schema field names (shared until the cap), plus user keys (never shared).
    const shape = Object.fromEntries(fields.filter((_, bit) => (i >> bit) & 1).map((f) => [f, i]));
    const value = { at: i, items: [shape, { ...shape }], labels: { [`user.key${i}`]: "x" } };
    written.push([codec.encode(value), value]);
  }
  assert.equal(codec.sharedStructures, 100);
  const fresh = new EventCodec({ store, maxSharedStructures: 100 });
  for (const [bytes, value] of written) assert.deepEqual(fresh.decode(bytes), value);
});

Deno.test("codec: malformed bytes throw DecodeError", () => {
  const codec = new EventCodec({ store: new MemoryStructureStore() });
  const good = codec.encodeBatch(batch([taskCreated(1)]));
  assert.throws(() => codec.decode(new Uint8Array()), DecodeError);
  assert.throws(() => codec.decode(new Uint8Array([9, 1, 2])), /Unknown encoding format 0x09/);
  assert.throws(() => codec.decode(good.subarray(0, good.length - 3)), DecodeError);
  assert.throws(() => codec.decodeBatch(codec.encode({ not: "a batch" })), /not a batch/);
});

Deno.test("codec: random batches round-trip through a restart (property)", () => {
  const text = fc.string({ maxLength: 12 });
  const event = fc.oneof(
    fc.record({ i: fc.nat(), cause: fc.option(fc.nat(), { nil: undefined }) }).map(({ i, cause }) =>
      cause === undefined
        ? taskCreated(i)
        : { ...taskCreated(i), meta: { by: "o", reason: "", cause } }
    ),
    fc.record({ i: fc.nat(), message: text, exitCode: fc.option(fc.integer(), { nil: undefined }) })
      .map(({ i, message, exitCode }) => {
        const e = statusReported(i);
        e.data.status.message = message;
        if (exitCode !== undefined) e.data.status.exitCode = exitCode;
        return e as ShoalEvent;
      }),
    fc.dictionary(text, text, { maxKeys: 4 }).map((labels) => serviceCreated(labels) as ShoalEvent),
  );
  const store = new MemoryStructureStore();
  const codec = new EventCodec({ store });
  const written: [Uint8Array, Batch][] = [];
  fc.assert(
    fc.property(fc.array(event, { minLength: 1, maxLength: 20 }), (events) => {
      const b = batch(events);
      written.push([codec.encodeBatch(b), structuredClone(b)]);
    }),
    { numRuns: 200 },
  );
  const fresh = new EventCodec({ store });
  for (const [bytes, b] of written) {
    assert.deepEqual(fresh.decodeBatch(bytes), b);
    Batch.parse(b);
  }
});

Deno.test("record: seal and open round-trip; the payload is a view", () => {
  const payload = new TextEncoder().encode("some entry bytes");
  const record = sealRecord(payload);
  assert.equal(record.length, payload.length + RECORD_CHECKSUM_BYTES);
  assert.deepEqual(openRecord(record, 1), payload);
  assert.deepEqual(openRecord(sealRecord(new Uint8Array()), 1), new Uint8Array());
});

Deno.test("record: any corrupted byte is reported with the record's index", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (payload, at, flip) => {
        const record = sealRecord(payload);
        record[at % record.length] ^= flip;
        assert.throws(
          () => openRecord(record, 42),
          (e) =>
            e instanceof CorruptRecordError && e.index === 42 &&
            /^Corrupt record at index 42: checksum mismatch \(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)$/
              .test(e.message),
        );
      },
    ),
  );
  assert.throws(() => openRecord(new Uint8Array(3), 7), /Corrupt record at index 7: too short/);
});
