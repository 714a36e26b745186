import assert from "node:assert/strict";
import { ev, Folder, meta, serviceSpec } from "../../../tests/_harness/events.ts";
import { allocate } from "./decide.ts";
import { TaskState } from "../../../events/schema.ts";

const ctx = { now: 1, newId: () => "x", cause: 1 };

function withPorts(
  name: string,
  ports: { targetPort: number; publishedPort?: number; publishMode?: string }[],
) {
  return serviceSpec(name, 1, { endpoint: { ports } });
}

Deno.test("allocator publishes ports, choosing free dynamic ones from 30000", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  f.ok({
    type: "ServiceCreated",
    v: 1,
    data: {
      id: "s1",
      spec: withPorts("a", [{ targetPort: 80 }, { targetPort: 443, publishedPort: 30001 }]),
    },
    meta: meta(),
  });
  f.ok({
    type: "ServiceCreated",
    v: 1,
    data: { id: "s2", spec: withPorts("b", [{ targetPort: 80 }]) },
    meta: meta(),
  });
  f.ok(...allocate(f.state, ctx));
  const a = f.state.services.get("s1")!.endpoint!.ports.map((p) => p.publishedPort);
  const b = f.state.services.get("s2")!.endpoint!.ports.map((p) => p.publishedPort);
  assert.deepEqual(a, [30000, 30001]);
  assert.deepEqual(b, [30002]);
  assert.deepEqual(allocate(f.state, ctx), [], "stable once allocated");
});

Deno.test("allocator moves new tasks to pending once their service's endpoint is allocated", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  const v = f.ok({
    type: "ServiceCreated",
    v: 1,
    data: { id: "s1", spec: withPorts("a", [{ targetPort: 80 }]) },
    meta: meta(),
  });
  f.ok(ev.taskCreated("t1", "s1", v));
  const first = allocate(f.state, ctx);
  assert.deepEqual(
    first.map((e) => e.type),
    ["NetworkCreated", "NetworkAllocated", "ServiceEndpointAllocated"],
    "the ingress network and the endpoint first",
  );
  f.ok(...first);
  const second = allocate(f.state, ctx);
  assert.deepEqual(second.map((e) => e.type), ["TaskAllocated"]);
  f.ok(...second);
  const t = f.state.tasks.get("t1")!;
  assert.equal(t.status.state, TaskState.pending);
  assert.equal(t.status.message, "pending task scheduling");
  assert.equal(t.ports[0].publishedPort, 30000);
  // Publishing through the routing mesh puts the service and its task on the ingress network.
  const ingress = f.state.networks.get("x")!;
  assert.equal(ingress.spec.ingress, true);
  assert.equal(ingress.subnet, "127.1.0.0/16");
  assert.deepEqual(f.state.services.get("s1")!.endpoint!.virtualIPs, [
    { networkId: "x", addr: "127.1.0.2" },
  ]);
  assert.deepEqual(t.networks, [{ networkId: "x", addr: "127.1.0.3" }]);
  assert.deepEqual(t.addresses, ["127.1.0.3"]);
});

Deno.test("an explicitly published ingress port belongs to one service", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  f.ok({
    type: "ServiceCreated",
    v: 1,
    data: { id: "s1", spec: withPorts("web", [{ targetPort: 80, publishedPort: 8080 }]) },
    meta: meta(),
  });
  const r = f.apply({
    type: "ServiceCreated",
    v: 1,
    data: { id: "s2", spec: withPorts("api", [{ targetPort: 81, publishedPort: 8080 }]) },
    meta: meta(),
  });
  assert.equal(r.applied, false);
  if (!r.applied) {
    assert.equal(
      r.rejection.reason,
      "port '8080' is already in use by service 'web' (s1) as an ingress port",
    );
  }
  // Host-mode ports are per node, not the swarm's: no conflict.
  f.ok({
    type: "ServiceCreated",
    v: 1,
    data: {
      id: "s3",
      spec: withPorts("h", [{ targetPort: 81, publishedPort: 8080, publishMode: "host" }]),
    },
    meta: meta(),
  });
});
