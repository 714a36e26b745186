/**
 * IPAM through the allocator and the fold: subnets, virtual IPs and task addresses, released when
 * tasks end and services go, never handed out twice (examples, then properties over random
 * histories folded for real).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  NetworkSpec,
  type ServiceSpec,
  type ShoalEvent,
  TaskState,
  type TaskStateValue,
} from "../../../events/schema.ts";
import { ev, Folder, meta, serviceSpec } from "../../../tests/_harness/events.ts";
import { allocate } from "./decide.ts";
import type { ClusterState } from "../../state.ts";
import { restore, snapshot } from "../../snapshot.ts";
import { decideNetworkCommand } from "../../entities/network.ts";
import { EventRejected } from "../../entities/rejection.ts";
import { contains, isAssignable, parseCidr, parseIPv4 } from "./ipam.ts";

function context() {
  let n = 0;
  return { now: 1, newId: () => `gen${++n}`, cause: 1 };
}

/** Runs the allocator until it has nothing more to say; returns every event it proposed. */
function settle(f: Folder, ctx = context()): ShoalEvent[] {
  const all: ShoalEvent[] = [];
  for (let i = 0; i < 20; i++) {
    const events = allocate(f.state, ctx);
    if (events.length === 0) return all;
    f.ok(...events);
    all.push(...events);
  }
  throw new Error("the allocator does not settle");
}

function networkCreated(id: string, name = id, extra: Partial<NetworkSpec> = {}): ShoalEvent {
  return {
    type: "NetworkCreated",
    v: 1,
    data: { id, spec: NetworkSpec.parse({ name, ...extra }) },
    meta: meta("user:network.create"),
  };
}

function onNetworks(name: string, networks: string[], extra: Record<string, unknown> = {}) {
  return serviceSpec(name, 1, {
    task: {
      runtime: { kind: "process", command: "/bin/sleep", args: ["1000"] },
      networks: networks.map((target) => ({ target })),
    },
    ...extra,
  });
}

function createService(f: Folder, id: string, spec: ServiceSpec): number {
  return f.ok({ type: "ServiceCreated", v: 1, data: { id, spec }, meta: meta() });
}

function report(id: string, state: TaskStateValue, expect?: number): ShoalEvent {
  return ev.taskReported(id, state, "test", expect);
}

Deno.test("networks get subnets, services VIPs and tasks addresses on each of their networks", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  f.ok(networkCreated("n1", "front"), networkCreated("n2", "back", { subnet: "127.42.0.0/24" }));
  const v = createService(f, "s1", onNetworks("api", ["n1", "n2"]));
  f.ok(ev.taskCreated("t1", "s1", v, 1), ev.taskCreated("t2", "s1", v, 2));
  settle(f);
  const n1 = f.state.networks.get("n1")!;
  const n2 = f.state.networks.get("n2")!;
  assert.deepEqual([n1.subnet, n1.gateway], ["127.1.0.0/16", "127.1.0.1"]);
  assert.deepEqual([n2.subnet, n2.gateway], ["127.42.0.0/24", "127.42.0.1"], "--subnet honoured");
  assert.deepEqual(f.state.services.get("s1")!.endpoint!.virtualIPs, [
    { networkId: "n1", addr: "127.1.0.2" },
    { networkId: "n2", addr: "127.42.0.2" },
  ]);
  const t1 = f.state.tasks.get("t1")!;
  const t2 = f.state.tasks.get("t2")!;
  assert.equal(t1.status.state, TaskState.pending);
  assert.deepEqual(t1.networks, [
    { networkId: "n1", addr: "127.1.0.3" },
    { networkId: "n2", addr: "127.42.0.3" },
  ]);
  assert.deepEqual(t1.addresses, ["127.1.0.3", "127.42.0.3"], "addresses[0] is the main one");
  assert.deepEqual(t2.addresses, ["127.1.0.4", "127.42.0.4"]);
  assert.deepEqual(settle(f), [], "stable once allocated");
});

Deno.test("a dnsrr service gets no VIP, its tasks still get addresses", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1"));
  const v = createService(
    f,
    "s1",
    onNetworks("db", ["n1"], { endpoint: { mode: "dnsrr", ports: [] } }),
  );
  f.ok(ev.taskCreated("t1", "s1", v));
  settle(f);
  assert.equal(f.state.services.get("s1")!.endpoint, undefined);
  assert.deepEqual(f.state.tasks.get("t1")!.addresses, ["127.1.0.2"]);
});

Deno.test("addresses of ended and removed tasks, and VIPs of removed services, are reused", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1"), ev.nodeRegistered("node1"));
  const v = createService(f, "s1", onNetworks("a", ["n1"]));
  f.ok(ev.taskCreated("t1", "s1", v, 1), ev.taskCreated("t2", "s1", v, 2));
  settle(f);
  assert.equal(f.state.addressOwners.get("127.1.0.3"), "t1");
  // t1 runs, then fails: its address is free again while its record stays (for history).
  f.ok(ev.taskAssigned("t1", "node1"));
  f.ok(report("t1", TaskState.running, undefined));
  assert.equal(f.state.addressOwners.get("127.1.0.3"), "t1", "a running task keeps it");
  f.ok(report("t1", TaskState.failed));
  assert.equal(f.state.addressOwners.has("127.1.0.3"), false);
  assert.deepEqual(f.state.tasks.get("t1")!.addresses, ["127.1.0.3"], "the record keeps it");
  f.ok(ev.taskCreated("t3", "s1", v, 1));
  settle(f);
  assert.deepEqual(f.state.tasks.get("t3")!.addresses, ["127.1.0.3"], "the lowest free address");
  // A removed task (never assigned) frees its address too.
  f.ok(ev.taskRemoved("t2"));
  assert.equal(f.state.addressOwners.has("127.1.0.4"), false);
  // Removing the service frees its VIP; another service gets it.
  f.ok({ type: "ServiceRemoved", v: 1, data: { id: "s1" }, meta: meta() });
  assert.equal(f.state.addressOwners.has("127.1.0.2"), false);
  createService(f, "s2", onNetworks("b", ["n1"]));
  settle(f);
  assert.deepEqual(f.state.services.get("s2")!.endpoint!.virtualIPs, [
    { networkId: "n1", addr: "127.1.0.2" },
  ]);
});

Deno.test("a service leaving a network gives back its VIP there and keeps the others", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1"), networkCreated("n2"));
  createService(f, "s1", onNetworks("a", ["n1", "n2"]));
  settle(f);
  const svc = f.state.services.get("s1")!;
  f.ok({
    type: "ServiceUpdated",
    v: 1,
    data: { id: "s1", spec: onNetworks("a", ["n2"]) },
    meta: meta("test", svc.version),
  });
  settle(f);
  assert.deepEqual(f.state.services.get("s1")!.endpoint!.virtualIPs, [
    { networkId: "n2", addr: "127.2.0.2" },
  ]);
  assert.equal(f.state.addressOwners.has("127.1.0.2"), false);
});

Deno.test("the fold refuses an address someone holds, outside its subnet, or reserved", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1"));
  const v = createService(f, "s1", onNetworks("a", ["n1"]));
  f.ok(ev.taskCreated("t1", "s1", v, 1), ev.taskCreated("t2", "s1", v, 2));
  settle(f);
  f.ok(ev.taskCreated("t3", "s1", v, 3));
  const allocated = (addr: string, networkId = "n1"): ShoalEvent => ({
    type: "TaskAllocated",
    v: 1,
    data: { id: "t3", ports: [], addresses: [addr], networks: [{ networkId, addr }] },
    meta: meta("allocator"),
  });
  const refused = (e: ShoalEvent) => {
    const r = f.apply(e);
    assert.equal(r.applied, false);
    return r.applied ? "" : r.rejection.reason;
  };
  assert.equal(
    refused(allocated("127.1.0.3")),
    "Cannot give task t3 address 127.1.0.3 on network n1: t1 holds it",
  );
  assert.match(refused(allocated("127.1.0.2")), /s1 holds it/, "the service's VIP");
  assert.match(refused(allocated("127.1.0.1")), /not an assignable address of 127\.1\.0\.0\/16/);
  assert.match(refused(allocated("127.2.0.9")), /not an assignable address/);
  assert.match(refused(allocated("127.1.0.9", "nope")), /no such network/);
  // Subnets never overlap.
  f.ok(networkCreated("n2"));
  const r = f.apply({
    type: "NetworkAllocated",
    v: 1,
    data: { id: "n2", subnet: "127.1.128.0/17", gateway: "127.1.128.1" },
    meta: meta("allocator"),
  });
  assert.equal(r.applied, false);
  if (!r.applied) assert.match(r.rejection.reason, /overlaps 127\.1\.0\.0\/16/);
  const netAllocated = (id: string, subnet: string, gateway: string): ShoalEvent => ({
    type: "NetworkAllocated",
    v: 1,
    data: { id, subnet, gateway },
    meta: meta("allocator"),
  });
  assert.match(
    refused(netAllocated("n2", "127.2.0.0/16", "127.2.0.7")),
    /gateway 127\.2\.0\.7 is not 127\.2\.0\.1, the first address of 127\.2\.0\.0\/16/,
  );
  assert.match(refused(netAllocated("n2", "10.2.0.0/16", "10.2.0.1")), /inside 127\.0\.0\.0\/8/);
  assert.match(
    refused(netAllocated("n1", "127.3.0.0/16", "127.3.0.1")),
    /Cannot allocate network n1: it already has subnet 127\.1\.0\.0\/16/,
  );
  f.ok(netAllocated("n2", "127.2.0.0/16", "127.2.0.1"));
  assert.equal(f.state.networks.get("n2")!.gateway, "127.2.0.1");
});

Deno.test("network create refuses subnets outside loopback or overlapping, and a second ingress", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1", "taken", { subnet: "127.9.0.0/16" }));
  const ctx = { by: "user:test", now: 1, newId: () => "new1" };
  const create = (spec: Partial<NetworkSpec>) =>
    decideNetworkCommand(f.state, {
      kind: "CreateNetwork",
      spec: NetworkSpec.parse({ name: "n", ...spec }),
    }, ctx);
  const refusal = (spec: Partial<NetworkSpec>) => {
    try {
      create(spec);
    } catch (err) {
      assert.ok(err instanceof EventRejected);
      return `${err.code}: ${err.message}`;
    }
    assert.fail("accepted");
  };
  assert.match(refusal({ subnet: "10.0.9.0/24" }), /^invalid_argument: .*inside 127\.0\.0\.0\/8/);
  assert.match(
    refusal({ subnet: "127.9.3.0/24" }),
    /overlaps 127\.9\.0\.0\/16/,
    "asked, not yet given",
  );
  assert.equal(create({ subnet: "127.10.0.0/16" })[0].type, "NetworkCreated");
  f.ok(networkCreated("i1", "my-ingress", { ingress: true }));
  assert.match(refusal({ ingress: true }), /^already_exists: an ingress network already exists/);
});

Deno.test("a network in use cannot be removed; the ingress network while services publish", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1", "back"));
  createService(f, "s1", onNetworks("api", ["n1"]));
  createService(f, "s2", serviceSpec("web", 1, { endpoint: { ports: [{ targetPort: 80 }] } }));
  settle(f);
  const remove = (id: string) =>
    f.apply({ type: "NetworkRemoved", v: 1, data: { id }, meta: meta() });
  const r1 = remove("n1");
  assert.equal(r1.applied, false);
  if (!r1.applied) {
    assert.equal(r1.rejection.reason, "network back is in use by the following service(s): api");
  }
  const ingress = [...f.state.networks.values()].find((n) => n.spec.ingress)!;
  assert.equal(ingress.spec.name, "ingress");
  const r2 = remove(ingress.id);
  assert.equal(r2.applied, false);
  if (!r2.applied) {
    assert.match(
      r2.rejection.reason,
      /^ingress network ingress cannot be removed because service\(s\) web depend on it/,
    );
  }
  f.ok({ type: "ServiceRemoved", v: 1, data: { id: "s1" }, meta: meta() });
  assert.equal(remove("n1").applied, true);
});

Deno.test("allocation survives a leader change: a restored snapshot hands out nothing twice", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), networkCreated("n1"));
  const v = createService(f, "s1", onNetworks("a", ["n1"]));
  f.ok(ev.taskCreated("t1", "s1", v, 1), ev.taskCreated("t2", "s1", v, 2));
  settle(f);
  const restored = restore(snapshot(f.state));
  assert.deepEqual([...restored.addressOwners].sort(), [...f.state.addressOwners].sort());
  assert.equal(restored.networks.get("n1")!.subnet, "127.1.0.0/16");
  // The "new leader" continues from the restored state.
  const g = new Folder();
  Object.assign(g, { state: restored });
  g.ok(ev.taskCreated("t3", "s1", v, 3));
  settle(g);
  assert.deepEqual(g.state.tasks.get("t3")!.addresses, ["127.1.0.5"]);
});

// ---------------------------------------------------------------------------------------------
// Properties

type Op =
  | { kind: "network"; subnet: boolean }
  | { kind: "service"; nets: number[]; replicas: number; publish: boolean; dnsrr: boolean }
  | { kind: "update"; pick: number; nets: number[] }
  | { kind: "end"; pick: number }
  | { kind: "removeTask"; pick: number }
  | { kind: "removeService"; pick: number }
  | { kind: "removeNetwork"; pick: number }
  | { kind: "allocate"; steps: number };

const netsArb = fc.uniqueArray(fc.nat(5), { maxLength: 3 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("network" as const), subnet: fc.boolean() }),
  fc.record({
    kind: fc.constant("service" as const),
    nets: netsArb,
    replicas: fc.integer({ min: 0, max: 4 }),
    publish: fc.boolean(),
    dnsrr: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("update" as const), pick: fc.nat(), nets: netsArb }),
  fc.record({ kind: fc.constant("end" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("removeTask" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("removeService" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("removeNetwork" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("allocate" as const), steps: fc.integer({ min: 1, max: 3 }) }),
);

/** Every address held now (live tasks' and VIPs), with its holder; fails on a duplicate. */
function checkAddressing(state: ClusterState): void {
  const held = new Map<string, string>();
  const hold = (addr: string, networkId: string, holder: string) => {
    const other = held.get(addr);
    assert.ok(other === undefined, `${addr} is held by ${other} and ${holder}`);
    held.set(addr, holder);
    const net = state.networks.get(networkId);
    // A network may be gone while tasks of a removed service still end; otherwise, inside it.
    if (net !== undefined) {
      const subnet = parseCidr(net.subnet!)!;
      const ip = parseIPv4(addr)!;
      assert.ok(contains(subnet, ip) && isAssignable(subnet, ip), `${addr} in ${net.subnet}`);
    }
  };
  for (const s of state.services.values()) {
    for (const v of s.endpoint?.virtualIPs ?? []) hold(v.addr, v.networkId, s.id);
  }
  for (const t of state.tasks.values()) {
    if (t.status.state >= TaskState.complete) continue;
    for (const a of t.networks) hold(a.addr, a.networkId, t.id);
    assert.deepEqual(t.addresses, t.networks.map((n) => n.addr));
  }
  assert.deepEqual(
    [...state.addressOwners].sort(),
    [...held].sort(),
    "the index is exactly the live holders",
  );
  const subnets = [...state.networks.values()].flatMap((n) => n.subnet ? [n.subnet] : []);
  for (let i = 0; i < subnets.length; i++) {
    for (let j = i + 1; j < subnets.length; j++) {
      const a = parseCidr(subnets[i])!;
      const b = parseCidr(subnets[j])!;
      assert.ok(
        a.base + 2 ** (32 - a.prefix) <= b.base || b.base + 2 ** (32 - b.prefix) <= a.base,
        `${subnets[i]} and ${subnets[j]} overlap`,
      );
    }
  }
}

function runOps(ops: Op[]): Folder {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("node1"));
  const ctx = context();
  let networks = 0;
  let services = 0;
  let tasks = 0;
  const pick = <T>(items: T[], n: number): T | undefined =>
    items.length === 0 ? undefined : items[n % items.length];
  const netIds = (nets: number[]) =>
    nets.map((i) => `n${i}`).filter((id) => f.state.networks.has(id));
  const spec = (name: string, nets: number[], publish: boolean, dnsrr: boolean) =>
    onNetworks(name, netIds(nets), {
      endpoint: {
        mode: dnsrr && !publish ? "dnsrr" : "vip",
        ports: publish ? [{ targetPort: 80 }] : [],
      },
    });
  for (const op of ops) {
    switch (op.kind) {
      case "network": {
        const id = `n${networks++}`;
        const subnet = op.subnet ? `127.${100 + networks}.0.0/24` : "";
        f.ok(networkCreated(id, id, { subnet }));
        break;
      }
      case "service": {
        const id = `s${services++}`;
        const v = createService(f, id, spec(id, op.nets, op.publish, op.dnsrr));
        for (let slot = 1; slot <= op.replicas; slot++) {
          f.ok(ev.taskCreated(`t${tasks++}`, id, v, slot));
        }
        break;
      }
      case "update": {
        const svc = pick([...f.state.services.values()], op.pick);
        if (svc === undefined) break;
        const next = { ...svc.spec, task: { ...svc.spec.task, networks: [] as never[] } };
        const updated = spec(
          svc.spec.name,
          op.nets,
          svc.spec.endpoint.ports.length > 0,
          svc.spec.endpoint.mode === "dnsrr",
        );
        f.ok({
          type: "ServiceUpdated",
          v: 1,
          data: { id: svc.id, spec: { ...next, task: updated.task } },
          meta: meta("test", svc.version),
        });
        const fresh = f.state.services.get(svc.id)!;
        f.ok(ev.taskCreated(`t${tasks++}`, svc.id, fresh.specVersion, 9));
        break;
      }
      case "end": {
        const live = [...f.state.tasks.values()].filter((t) =>
          t.status.state === TaskState.pending
        );
        const t = pick(live, op.pick);
        if (t === undefined) break;
        f.ok(ev.taskAssigned(t.id, "node1"));
        f.ok(report(t.id, TaskState.running));
        f.ok(report(t.id, TaskState.complete));
        break;
      }
      case "removeTask": {
        const removable = [...f.state.tasks.values()].filter((t) =>
          t.status.state < TaskState.assigned || t.status.state >= TaskState.complete
        );
        const t = pick(removable, op.pick);
        if (t !== undefined) f.ok(ev.taskRemoved(t.id));
        break;
      }
      case "removeService": {
        const svc = pick([...f.state.services.values()], op.pick);
        if (svc !== undefined) {
          f.ok({ type: "ServiceRemoved", v: 1, data: { id: svc.id }, meta: meta() });
        }
        break;
      }
      case "removeNetwork": {
        const net = pick([...f.state.networks.values()], op.pick);
        // Refused while in use: either way the invariants must hold.
        if (net !== undefined) {
          f.apply({ type: "NetworkRemoved", v: 1, data: { id: net.id }, meta: meta() });
        }
        break;
      }
      case "allocate":
        for (let i = 0; i < op.steps; i++) {
          const first = allocate(f.state, { ...ctx, newId: () => "ingress-id" });
          const again = allocate(f.state, { ...ctx, newId: () => "ingress-id" });
          assert.deepEqual(again, first, "the allocator is deterministic");
          if (first.length > 0) f.ok(...first); // the fold accepts all it proposes
        }
        break;
    }
    checkAddressing(f.state);
  }
  return f;
}

Deno.test("property: no address is held twice, whatever happens, and the fold agrees", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      const f = runOps([...ops, { kind: "allocate", steps: 3 }]);
      // Once settled, every task still new that can run has addresses on all its networks.
      settle(f);
      for (const t of f.state.tasks.values()) {
        if (t.status.state !== TaskState.pending) continue;
        const svc = f.state.services.get(t.serviceId);
        if (svc === undefined) continue;
        const want = new Set(f.state.taskSpec(t).networks.map((n) => n.target));
        for (const id of want) {
          assert.ok(
            t.networks.some((n) => n.networkId === id),
            `task ${t.id} has no address on ${id}`,
          );
        }
      }
    }),
    { numRuns: 150 },
  );
});

Deno.test("property: replaying the same log gives the same addresses (a new leader agrees)", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
      const a = runOps(ops);
      const b = runOps(ops);
      const view = (s: ClusterState) =>
        [...s.tasks.values()].map((t) => [t.id, t.networks]).concat(
          [...s.services.values()].map((x) => [x.id, x.endpoint?.virtualIPs ?? []]),
        );
      assert.deepEqual(view(a.state), view(b.state));
      const restored = restore(snapshot(a.state));
      assert.deepEqual([...restored.addressOwners].sort(), [...a.state.addressOwners].sort());
    }),
    { numRuns: 50 },
  );
});
