/**
 * Service networking through Docker's API over a real manager with its projections: networks get
 * loopback subnets, services virtual IPs and tasks addresses, shown in Docker's shapes; a network
 * in use cannot be removed; stack networks carry their namespace label.
 */
import assert from "node:assert/strict";
import { type ApiFixture, filters, withApi } from "./_harness.ts";

/** Waits until the async `fn` gives something truthy. */
async function eventually<T>(what: string, fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function processService(name: string, networks: string[], extra: Record<string, unknown> = {}) {
  return {
    Name: name,
    TaskTemplate: {
      Runtime: "process",
      ProcessSpec: { Command: "/bin/sleep", Args: ["600"] },
      Networks: networks.map((Target) => ({ Target })),
    },
    Mode: { Replicated: { Replicas: 2 } },
    ...extra,
  };
}

async function post(api: ApiFixture, path: string, body: unknown) {
  const res = await api.call("POST", path, body);
  assert.ok(res.status < 300, `${path}: ${res.status} ${res.text}`);
  return res.body;
}

Deno.test("networks, VIPs and task addresses in Docker's shapes", async () => {
  await withApi(async (api) => {
    // What `docker network create --driver overlay --attachable --opt encrypted
    // --subnet 127.77.0.0/24 --label com.docker.stack.namespace=shop shop_default` sends.
    const { Id: netId } = await post(api, "/networks/create", {
      Name: "shop_default",
      CheckDuplicate: true,
      Driver: "overlay",
      IPAM: { Driver: "default", Config: [{ Subnet: "127.77.0.0/24" }], Options: {} },
      Attachable: true,
      Options: { encrypted: "" },
      Labels: { "com.docker.stack.namespace": "shop" },
    });
    const { Id: autoId } = await post(api, "/networks/create", { Name: "auto" });
    const net = await eventually("the subnet", async () => {
      const n = (await api.call("GET", `/networks/${netId}`)).body;
      return n.IPAM.Config[0]?.Gateway && n;
    });
    assert.deepEqual(net.IPAM, {
      Driver: "default",
      Options: null,
      Config: [{ Subnet: "127.77.0.0/24", Gateway: "127.77.0.1" }],
    });
    assert.equal(net.Attachable, true);
    assert.deepEqual(net.Options, { encrypted: "" });
    assert.deepEqual(net.Labels, { "com.docker.stack.namespace": "shop" });
    const stackNets = (await api.call(
      "GET",
      `/networks?filters=${filters({ label: ["com.docker.stack.namespace=shop"] })}`,
    )).body;
    assert.deepEqual(stackNets.map((n: { Name: string }) => n.Name), ["shop_default"]);
    const auto = await eventually("the automatic subnet", async () => {
      const n = (await api.call("GET", `/networks/${autoId}`)).body;
      return n.IPAM.Config[0]?.Gateway && n;
    });
    assert.deepEqual(auto.IPAM.Config, [{ Subnet: "127.1.0.0/16", Gateway: "127.1.0.1" }]);

    // `--network shop_default` names the network; Docker's CLI sends it as the target.
    const { ID: svcId } = await post(
      api,
      "/services/create",
      processService("api", ["shop_default"]),
    );
    const svc = await eventually("the VIP", async () => {
      const s = (await api.call("GET", `/services/${svcId}`)).body;
      return s.Endpoint?.VirtualIPs && s;
    });
    assert.deepEqual(svc.Endpoint.VirtualIPs, [{ NetworkID: netId, Addr: "127.77.0.2/24" }]);
    assert.deepEqual(svc.Spec.TaskTemplate.Networks, [{ Target: netId }]);

    const tasks = await eventually("addressed tasks", async () => {
      const ts = (await api.call("GET", `/tasks?filters=${filters({ service: ["api"] })}`)).body;
      return ts.length === 2 && ts.every((t: { NetworksAttachments?: unknown }) =>
        t.NetworksAttachments
      ) && ts;
    });
    const addrs = tasks.map((t: { NetworksAttachments: { Addresses: string[] }[] }) =>
      t.NetworksAttachments[0].Addresses[0]
    ).sort();
    assert.deepEqual(addrs, ["127.77.0.3/24", "127.77.0.4/24"]);
    const attachment = tasks[0].NetworksAttachments[0];
    assert.equal(attachment.Network.ID, netId);
    assert.equal(attachment.Network.Spec.Name, "shop_default");
    assert.deepEqual(attachment.Network.IPAMOptions.Configs, [
      { Subnet: "127.77.0.0/24", Gateway: "127.77.0.1" },
    ]);

    // In use: refused with the services named; free again once they are gone.
    const rm = await api.call("DELETE", `/networks/${netId}`);
    assert.equal(rm.status, 400);
    assert.equal(
      rm.body.message,
      "network shop_default is in use by the following service(s): api",
    );
    assert.equal((await api.call("DELETE", `/services/${svcId}`)).status, 200);
    assert.equal((await api.call("DELETE", `/networks/${netId}`)).status, 204);
  });
});

Deno.test("a published port puts a service on the ingress network; bad subnets are refused", async () => {
  await withApi(async (api) => {
    const { ID } = await post(
      api,
      "/services/create",
      processService("web", [], { EndpointSpec: { Ports: [{ TargetPort: 80 }] } }),
    );
    const svc = await eventually("the ingress VIP", async () => {
      const s = (await api.call("GET", `/services/${ID}`)).body;
      return s.Endpoint?.VirtualIPs && s;
    });
    const ingress = (await api.call("GET", "/networks/ingress")).body;
    assert.equal(ingress.Ingress, true);
    assert.deepEqual(svc.Endpoint.VirtualIPs, [{ NetworkID: ingress.Id, Addr: "127.1.0.2/16" }]);
    const rm = await api.call("DELETE", "/networks/ingress");
    assert.equal(rm.status, 400);
    assert.match(
      rm.body.message,
      /ingress network ingress cannot be removed because service\(s\) web/,
    );

    for (
      const [subnet, why] of [
        ["10.0.9.0/24", /must be inside 127\.0\.0\.0\/8/],
        ["127.0.3.0/24", /reserved for the host/],
        ["127.1.5.0/24", /overlaps 127\.1\.0\.0\/16, the subnet of another network/],
      ] as const
    ) {
      const res = await api.call("POST", "/networks/create", {
        Name: "bad",
        IPAM: { Config: [{ Subnet: subnet }] },
      });
      assert.equal(res.status, 400, subnet);
      assert.match(res.body.message, why);
    }
    const gw = await api.call("POST", "/networks/create", {
      Name: "gw",
      IPAM: { Config: [{ Subnet: "127.50.0.0/24", Gateway: "127.50.0.9" }] },
    });
    assert.equal(gw.status, 400);
    assert.match(gw.body.message, /Gateway: must be 127\.50\.0\.1/);
  });
});
