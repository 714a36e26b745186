/**
 * The mesh map's way to workers: the dispatcher's feed sends a map only when it changed, and a
 * worker's source keeps the last valid map it received.
 */
import assert from "node:assert/strict";
import { ev, Folder } from "../../tests/_harness/events.ts";
import { MeshMapFeed, sessionMeshSource } from "./feed.ts";
import { stateMeshSource } from "./mesh.ts";
import { EMPTY_MESH_MAP, type MeshMap } from "./mesh_map.ts";

/** A published port: what makes a service (and its tasks) part of the mesh map. */
const published = (port: number) => ({
  endpoint: {
    mode: "vip",
    ports: [{ protocol: "tcp", targetPort: 80, publishedPort: port, publishMode: "ingress" }],
  },
});

Deno.test("the feed sends the map when a session opens, then only when it changed", async () => {
  const f = new Folder();
  const listeners = new Set<() => void>();
  const manager = {
    get state() {
      return f.state;
    },
    onApplied: (l: () => void) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  const apply = (...events: Parameters<Folder["ok"]>) => {
    const index = f.ok(...events);
    for (const l of listeners) l();
    return index;
  };
  const sent: MeshMap[] = [];
  const feed = new MeshMapFeed({
    manager,
    broadcast: (m) => sent.push(m.map as MeshMap),
    intervalMs: 20,
  });
  try {
    apply(ev.clusterCreated(), ev.nodeRegistered("n1"));
    const first = feed.full();
    assert.equal(first.t, "mesh");
    assert.deepEqual((first.map as MeshMap).nodes.map((n) => n.id), ["n1"]);
    const v = apply(ev.serviceCreated("web", "web", 1, published(8080)));
    apply(ev.serviceCreated("api", "api", 1, published(8081))); // one interval: one message
    apply(ev.serviceCreated("batch")); // no port, no network: not in the map
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(sent.map((m) => m.services.map((s) => s.name)), [["web", "api"]]);
    apply(ev.taskCreated("t1", "web", v)); // a new task is nothing the mesh routes to yet
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(sent.length, 1);
  } finally {
    feed.close();
  }
  assert.equal(listeners.size, 0);
});

Deno.test("a worker's source validates what its session received and keeps the last good map", () => {
  let raw: unknown = undefined;
  const listeners = new Set<() => void>();
  const errors: string[] = [];
  const source = sessionMeshSource({
    get meshMap() {
      return raw;
    },
    onMeshMap: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  }, { info: () => {}, warn: () => {}, error: (m) => errors.push(m) });
  let heard = 0;
  source.subscribe(() => heard++);
  assert.equal(source.current(), EMPTY_MESH_MAP);
  const good: MeshMap = { ...EMPTY_MESH_MAP, index: 7, nodes: [{ id: "n1", addr: "10.0.0.1" }] };
  raw = good;
  for (const l of listeners) l();
  assert.equal(heard, 1);
  assert.deepEqual(source.current(), good);
  raw = { index: "bad" };
  assert.deepEqual(source.current(), good);
  assert.equal(errors.length, 1);
  assert.match(errors[0], /not valid/);
});

Deno.test("a manager's mesh source follows its state, telling once per burst of entries", async () => {
  const f = new Folder();
  const listeners = new Set<() => void>();
  const source = stateMeshSource({
    get state() {
      return f.state;
    },
    onApplied: (l: () => void) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  }, 20);
  let told = 0;
  const stop = source.subscribe(() => told++);
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"));
  for (const l of listeners) l();
  f.ok(ev.serviceCreated("web", "web", 1, published(8080)));
  for (const l of listeners) l();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(told, 1);
  assert.deepEqual(source.current().services.map((s) => s.name), ["web"]);
  assert.equal(source.current(), source.current(), "computed once per index");
  stop();
  assert.equal(listeners.size, 0);
});
