/**
 * The mesh map from a folded state: which tasks serve, their addresses per network, the
 * services' VIPs, ports and stacks; and the schema a worker checks a received map with.
 */
import assert from "node:assert/strict";
import { type ShoalEvent, TaskState } from "../../events/schema.ts";
import { ev, Folder, meta } from "../../tests/_harness/events.ts";
import { bareAddr, inSubnet, meshMapFromState, MeshMapSchema } from "./mesh_map.ts";

function nodeReady(id: string, addr: string): ShoalEvent {
  return {
    type: "NodeStatusChanged",
    v: 1,
    data: { id, status: { state: "ready", message: "", addr } },
    meta: meta("dispatcher"),
  };
}

Deno.test("the mesh map holds serving tasks with their addresses, and services with VIPs and ports", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"), ev.nodeRegistered("n2"));
  f.ok(nodeReady("n1", "10.0.0.1"), nodeReady("n2", "10.0.0.2"));
  f.ok({
    type: "NetworkCreated",
    v: 1,
    data: {
      id: "net1",
      spec: {
        name: "front",
        labels: {},
        driver: "overlay",
        scope: "swarm",
        attachable: false,
        internal: false,
        ingress: false,
        subnet: "",
        options: {},
      },
    },
    meta: meta("user:network.create"),
  });
  f.ok({
    type: "NetworkAllocated",
    v: 1,
    data: { id: "net1", subnet: "127.5.0.0/16", gateway: "127.5.0.1" },
    meta: meta("allocator"),
  } as ShoalEvent);
  const v = f.ok(ev.serviceCreated("web", "shop_web", 3, {
    labels: { "com.docker.stack.namespace": "shop" },
    endpoint: { mode: "vip", ports: [{ targetPort: 80, publishedPort: 30080 }] },
    task: {
      runtime: { kind: "process", command: "/bin/sleep", args: ["1000"] },
      networks: [{ target: "net1", aliases: ["www"] }],
    },
  }));
  f.ok({
    type: "ServiceEndpointAllocated",
    v: 1,
    data: {
      id: "web",
      endpoint: {
        ports: [{
          name: "",
          protocol: "tcp",
          targetPort: 80,
          publishedPort: 30080,
          publishMode: "ingress",
        }],
        virtualIPs: [{ networkId: "net1", addr: "127.5.0.2" }],
      },
    },
    meta: meta("allocator"),
  });
  const tasks = [["t1", "n1"], ["t2", "n2"], ["t3", "n2"]] as const;
  tasks.forEach(([id, node], i) => {
    f.ok(ev.taskCreated(id, "web", v, i + 1));
    f.ok({
      type: "TaskAllocated",
      v: 1,
      data: {
        id,
        ports: [],
        addresses: [`127.5.0.${10 + i}`],
        networks: [{ networkId: "net1", addr: `127.5.0.${10 + i}` }],
      },
      meta: meta("allocator"),
    } as ShoalEvent);
    f.ok(ev.taskAssigned(id, node));
  });
  for (const [id] of tasks) {
    for (const s of [TaskState.accepted, TaskState.starting]) f.ok(ev.taskReported(id, s));
  }
  f.ok(ev.taskReported("t1", TaskState.running), ev.taskReported("t2", TaskState.running));
  // t3 is still starting (its health check has not passed yet): in the map, not serving.
  const map = meshMapFromState(f.state);
  assert.deepEqual(map.nodes, [{ id: "n1", addr: "10.0.0.1" }, { id: "n2", addr: "10.0.0.2" }]);
  assert.deepEqual(map.networks, [{ id: "net1", name: "front", subnet: "127.5.0.0/16" }]);
  assert.deepEqual(map.services, [{
    id: "web",
    name: "shop_web",
    stack: "shop",
    mode: "vip",
    ports: [{ protocol: "tcp", targetPort: 80, publishedPort: 30080, publishMode: "ingress" }],
    vips: [{ networkId: "net1", addr: "127.5.0.2" }],
    networks: [{ id: "net1", aliases: ["www"] }],
  }]);
  assert.deepEqual(
    map.tasks.map((t) => [t.id, t.nodeId, t.serving, t.addresses.map((a) => a.addr).join()]),
    [["t1", "n1", true, "127.5.0.10"], ["t2", "n2", true, "127.5.0.11"], [
      "t3",
      "n2",
      false,
      "127.5.0.12",
    ]],
  );
  assert.deepEqual(MeshMapSchema.parse(map), map);
  // A task asked to stop leaves at once; a node that goes down takes its tasks out of service.
  f.ok(ev.taskDesired("t1", TaskState.shutdown));
  f.ok({
    type: "NodeStatusChanged",
    v: 1,
    data: { id: "n2", status: { state: "down", message: "", addr: "10.0.0.2" } },
    meta: meta("dispatcher"),
  });
  const after = meshMapFromState(f.state);
  assert.deepEqual(after.tasks.map((t) => [t.id, t.serving]), [["t2", false], ["t3", false]]);
});

Deno.test("addresses and subnets", () => {
  assert.equal(bareAddr("127.1.0.5/16"), "127.1.0.5");
  assert.ok(inSubnet("127.1.200.5", "127.1.0.0/16"));
  assert.ok(!inSubnet("127.2.0.5", "127.1.0.0/16"));
  assert.ok(inSubnet("10.0.0.1", "0.0.0.0/0"));
  assert.ok(!inSubnet("nope", "127.0.0.0/8"));
});

Deno.test("a received map that is not one is refused", () => {
  assert.throws(() => MeshMapSchema.parse({ index: 1, nodes: [], networks: [], services: [] }));
  assert.throws(() =>
    MeshMapSchema.parse({
      index: 1,
      nodes: [],
      networks: [],
      services: [{
        id: "s",
        name: "s",
        stack: "",
        mode: "vip",
        ports: [{ protocol: "tcp", targetPort: 0, publishedPort: 0, publishMode: "ingress" }],
        vips: [],
        networks: [],
      }],
      tasks: [],
    })
  );
});
