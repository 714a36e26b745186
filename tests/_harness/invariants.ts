/**
 * Whole-state checks for tests: every index agrees with a recomputation from the tables, every
 * spec reference count is right, every live task's service spec and node exist, no address is
 * held twice.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isTerminalTaskState } from "../../events/schema.ts";
import { type ClusterState, nodeName, specKey } from "../../actors/state.ts";
import type { MultiIndex } from "../../actors/table.ts";

function expectIndex<K>(name: string, index: MultiIndex<K>, want: Map<K, Set<string>>): void {
  const got = new Map<K, Set<string>>();
  for (const k of index.keys()) got.set(k, new Set(index.get(k)));
  assert.deepEqual(got, want, `index ${name} is out of step with its table`);
}

function group<R, K>(rows: Iterable<R>, key: (r: R) => K | undefined, id: (r: R) => string) {
  const m = new Map<K, Set<string>>();
  for (const r of rows) {
    const k = key(r);
    if (k === undefined) continue;
    if (!m.has(k)) m.set(k, new Set());
    m.get(k)!.add(id(r));
  }
  return m;
}

/** Throws (with a clear message) unless the state is internally consistent. */
export function checkInvariants(state: ClusterState): void {
  const tasks = [...state.tasks.values()];
  const nodes = [...state.nodes.values()];
  expectIndex(
    "tasksByService",
    state.tasksByService,
    group(tasks, (t) => t.serviceId, (t) => t.id),
  );
  expectIndex(
    "tasksByNode",
    state.tasksByNode,
    group(tasks, (t) => t.nodeId || undefined, (t) => t.id),
  );
  expectIndex("tasksByState", state.tasksByState, group(tasks, (t) => t.status.state, (t) => t.id));
  expectIndex(
    "tasksByDesiredState",
    state.tasksByDesiredState,
    group(tasks, (t) => t.desiredState, (t) => t.id),
  );
  expectIndex("nodesByRole", state.nodesByRole, group(nodes, (n) => n.role, (n) => n.id));
  expectIndex(
    "nodesByAvailability",
    state.nodesByAvailability,
    group(nodes, (n) => n.spec.availability, (n) => n.id),
  );
  expectIndex("nodesByName", state.nodesByName, group(nodes, nodeName, (n) => n.id));
  const names = new Map([...state.services.values()].map((s) => [s.spec.name, s.id]));
  assert.deepEqual(new Map(state.serviceNames), names, "serviceNames is out of step");

  const refs = new Map<string, number>();
  const ref = (k: string) => refs.set(k, (refs.get(k) ?? 0) + 1);
  for (const s of state.services.values()) {
    ref(specKey(s.id, s.specVersion));
    if (s.previousSpecVersion !== undefined) ref(specKey(s.id, s.previousSpecVersion));
  }
  for (const t of tasks) ref(specKey(t.serviceId, t.specVersion));
  const stored = new Map([...state.specs.values()].map((r) => [r.id, r.refs]));
  assert.deepEqual(stored, refs, "spec reference counts are wrong");

  for (const t of tasks) {
    if (t.nodeId !== "" && !isTerminalTaskState(t.status.state)) {
      assert.ok(state.nodes.has(t.nodeId), `live task ${t.id} is on missing node ${t.nodeId}`);
    }
  }

  // IPAM: no address is held twice (services' VIPs, live tasks' addresses), and the index of
  // holders is exactly that.
  const held = new Map<string, string>();
  const hold = (addr: string, holder: string) => {
    const other = held.get(addr);
    assert.ok(other === undefined, `address ${addr} is held by both ${other} and ${holder}`);
    held.set(addr, holder);
  };
  for (const s of state.services.values()) {
    for (const v of s.endpoint?.virtualIPs ?? []) hold(v.addr, s.id);
  }
  for (const t of tasks) {
    if (!isTerminalTaskState(t.status.state)) {
      for (const a of t.networks ?? []) hold(a.addr, t.id);
    }
  }
  assert.deepEqual(new Map(state.addressOwners), held, "addressOwners is out of step");
}
