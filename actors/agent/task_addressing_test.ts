import assert from "node:assert/strict";
import { NetworkSpec, type ShoalEvent } from "../../events/schema.ts";
import { ev, Folder, meta, serviceSpec } from "../../tests/_harness/events.ts";
import { allocate } from "../projections/allocator/decide.ts";
import {
  addressingEnv,
  mainAddress,
  serviceHostVariable,
  taskAddressing,
} from "./task_addressing.ts";

function network(id: string): ShoalEvent {
  return {
    type: "NetworkCreated",
    v: 1,
    data: { id, spec: NetworkSpec.parse({ name: id }) },
    meta: meta(),
  };
}

function service(
  id: string,
  name: string,
  networks: { target: string; aliases?: string[] }[],
  extra: Record<string, unknown> = {},
): ShoalEvent {
  return {
    type: "ServiceCreated",
    v: 1,
    data: {
      id,
      spec: serviceSpec(name, 1, {
        task: { runtime: { kind: "process", command: "/bin/sleep" }, networks },
        ...extra,
      }),
    },
    meta: meta(),
  };
}

function settle(f: Folder): void {
  let n = 0;
  const ctx = { now: 1, newId: () => `gen${++n}`, cause: 1 };
  for (let i = 0; i < 10; i++) {
    const events = allocate(f.state, ctx);
    if (events.length === 0) return;
    f.ok(...events);
  }
}

Deno.test("service variable names are upper-cased, with _ for anything not a letter or digit", () => {
  assert.equal(serviceHostVariable("api"), "SHOAL_SERVICE_API_HOST");
  assert.equal(serviceHostVariable("my-stack_api.v2"), "SHOAL_SERVICE_MY_STACK_API_V2_HOST");
});

Deno.test("a task sees the VIPs of services on networks it shares, by name, alias and short name", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), network("front"), network("back"), network("other"));
  f.ok(
    service("web", "shop_web", [{ target: "front" }], {
      labels: { "com.docker.stack.namespace": "shop" },
      endpoint: { ports: [{ targetPort: 80 }] },
    }),
    service("api", "shop_api", [{ target: "front" }, { target: "back", aliases: ["backend"] }], {
      labels: { "com.docker.stack.namespace": "shop" },
    }),
    service("db", "db", [{ target: "back" }]),
    service("lone", "lone", [{ target: "other" }]),
    service("rr", "rr", [{ target: "front" }], { endpoint: { mode: "dnsrr", ports: [] } }),
    service("pub", "pub", [], { endpoint: { ports: [{ targetPort: 81 }] } }),
  );
  const v = f.state.index;
  f.ok(ev.taskCreated("t-web", "web", v), ev.taskCreated("t-api", "api", v));
  f.ok(ev.taskCreated("t-pub", "pub", v));
  settle(f);
  const vip = (svc: string, net: string) =>
    f.state.services.get(svc)!.endpoint!.virtualIPs.find((x) => x.networkId === net)!.addr;
  const web = taskAddressing(f.state, f.state.tasks.get("t-web")!);
  assert.equal(web.addr, f.state.tasks.get("t-web")!.addresses[0]);
  assert.equal(web.addr.startsWith("127.1."), true, "its first network's address: front");
  assert.deepEqual(web.services, {
    SHOAL_SERVICE_SHOP_API_HOST: vip("api", "front"),
    SHOAL_SERVICE_SHOP_WEB_HOST: vip("web", "front"),
    SHOAL_SERVICE_API_HOST: vip("api", "front"),
    SHOAL_SERVICE_WEB_HOST: vip("web", "front"),
  }, "not db or lone (other networks), not rr (dnsrr), not pub (shares only ingress)");
  const api = taskAddressing(f.state, f.state.tasks.get("t-api")!).services;
  assert.equal(api.SHOAL_SERVICE_DB_HOST, vip("db", "back"));
  assert.equal(api.SHOAL_SERVICE_SHOP_API_HOST, vip("api", "front"), "its first shared network");
  // The alias names the VIP on the network it is given for.
  assert.equal(api.SHOAL_SERVICE_BACKEND_HOST, vip("api", "back"));
  assert.equal(api.SHOAL_SERVICE_LONE_HOST, undefined);
  // A task whose only network is ingress reaches no service by name.
  assert.deepEqual(taskAddressing(f.state, f.state.tasks.get("t-pub")!).services, {});
});

Deno.test("a task on no network binds 127.0.0.1", () => {
  assert.equal(mainAddress({ networks: [], addresses: [] }), "127.0.0.1");
  assert.deepEqual(addressingEnv(undefined), { SHOAL_TASK_ADDR: "127.0.0.1" });
  assert.deepEqual(
    addressingEnv({ addr: "127.2.0.3", services: { SHOAL_SERVICE_X_HOST: "127.2.0.2" } }),
    { SHOAL_SERVICE_X_HOST: "127.2.0.2", SHOAL_TASK_ADDR: "127.2.0.3" },
  );
});
