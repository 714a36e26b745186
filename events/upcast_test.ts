import assert from "node:assert/strict";
import { EventCodec, MemoryStructureStore } from "./codec.ts";
import { Batch, type EventOf } from "./schema.ts";
import { type StoredEvent, UpcasterRegistry, upcasters, upcastEvent } from "./upcast.ts";

/** TaskStatusReported as if v0 had stored a flat `state` and `message` beside the id. */
function v0StatusReported(i: number): StoredEvent {
  return {
    type: "TaskStatusReported",
    v: 0,
    data: { id: `task${i}`, state: 512, message: "started", at: 1_700_000_000_000 + i },
    meta: { by: "agent:node1", reason: "status report" },
  };
}

function current(i: number): EventOf<"TaskStatusReported"> {
  return {
    type: "TaskStatusReported",
    v: 1,
    data: {
      id: `task${i}`,
      status: { state: 512, timestamp: 1_700_000_000_000 + i, message: "started", err: "" },
    },
    meta: { by: "agent:node1", reason: "status report" },
  };
}

function v0ToV1(event: StoredEvent): StoredEvent {
  const { id, state, message, at } = event.data as {
    id: string;
    state: number;
    message: string;
    at: number;
  };
  return { ...event, v: 1, data: { id, status: { state, timestamp: at, message, err: "" } } };
}

Deno.test("upcast: Shoal registers no upcasters while every event is v1", () => {
  assert.equal(upcasters.size, 0);
  const event = current(1);
  assert.equal(upcastEvent(event), event, "a current event is returned as it is");
});

Deno.test("upcast: an old v0 event decodes as the current shape through an injected registry", () => {
  const registry = new UpcasterRegistry().register("TaskStatusReported", 0, v0ToV1);
  const store = new MemoryStructureStore();
  // Bytes as an old version of Shoal wrote them.
  const old = new EventCodec({ store }).encode({
    at: 1,
    by: "agent:node1",
    events: [v0StatusReported(1), current(2), v0StatusReported(3)],
  });

  const codec = new EventCodec({ store, upcasters: registry });
  const batch = codec.decodeBatchChecked(old);
  assert.deepEqual(batch, {
    at: 1,
    by: "agent:node1",
    events: [current(1), current(2), current(3)],
  });
  Batch.parse(batch);

  // Without the upcaster the same bytes are not a valid current batch.
  assert.throws(() => new EventCodec({ store }).decodeBatchChecked(old), /events\[0\]/);
});

Deno.test("upcast: upcasters chain, may rename a type, and are registered once", () => {
  const registry = new UpcasterRegistry()
    .register("TaskStatus", 0, (e) => ({ ...e, type: "TaskStatusReported", v: 0 }))
    .register("TaskStatusReported", 0, v0ToV1);
  assert.equal(registry.size, 2);
  assert.deepEqual(registry.upcast({ ...v0StatusReported(7), type: "TaskStatus" }), current(7));
  assert.throws(
    () => registry.register("TaskStatusReported", 0, v0ToV1),
    /already registered/,
  );
});

Deno.test("upcast: upcasters that loop are caught", () => {
  const registry = new UpcasterRegistry()
    .register("A", 1, (e) => ({ ...e, type: "B" }))
    .register("B", 1, (e) => ({ ...e, type: "A" }));
  assert.throws(
    () => registry.upcast({ type: "A", v: 1, data: {}, meta: {} }),
    /upcasters loop/,
  );
});
