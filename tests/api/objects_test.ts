/**
 * Docker's node, secret, config and network endpoints over a real manager.
 */
import assert from "node:assert/strict";
import { DESCRIPTION, filters, withApi } from "./_harness.ts";

Deno.test("nodes: list with filters, inspect, update, and refusals", async () => {
  await withApi(async (api) => {
    const list = await api.call("GET", "/v1.41/nodes");
    assert.equal(list.status, 200);
    assert.equal(list.body.length, 1);
    const n = list.body[0];
    assert.equal(n.ID, api.nodeId);
    assert.deepEqual(n.Spec, { Labels: {}, Role: "manager", Availability: "active" });
    assert.equal(n.Description.Hostname, "node-1");
    assert.deepEqual(n.Description.Platform, { Architecture: "x86_64", OS: "linux" });
    assert.deepEqual(n.Description.Resources, { NanoCPUs: 4e9, MemoryBytes: 8 * 2 ** 30 });
    assert.deepEqual(n.Description.Engine, { Labels: { disk: "ssd" } });
    assert.deepEqual(n.Description.Runtimes, ["process"], "Shoal's extension");
    assert.match(n.Description.TLSInfo.TrustRoot, /BEGIN CERTIFICATE/);
    assert.deepEqual(n.Status, { State: "ready", Addr: "127.0.0.1" });
    assert.deepEqual(n.ManagerStatus, {
      Leader: true,
      Reachability: "reachable",
      Addr: "127.0.0.1:4375",
    });

    const count = async (f: Record<string, string[]>) =>
      (await api.call("GET", `/nodes?filters=${filters(f)}`)).body.length;
    assert.equal(await count({ role: ["manager"] }), 1);
    assert.equal(await count({ role: ["worker"] }), 0);
    assert.equal(await count({ name: ["node"] }), 1);
    assert.equal(await count({ label: ["disk=ssd"] }), 1);
    assert.equal(await count({ "node.label": ["zone"] }), 0);
    assert.equal(await count({ membership: ["accepted"] }), 1);

    for (const ref of [api.nodeId, "node-1", api.nodeId.slice(0, 4)]) {
      assert.equal((await api.call("GET", `/nodes/${ref}`)).body.ID, api.nodeId);
    }
    const missing = await api.call("GET", "/nodes/self");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.message, "node self not found");

    // `docker node update --availability drain --label-add zone=east node-1`
    const spec = { ...n.Spec, Availability: "drain", Labels: { zone: "east" } };
    const up = await api.call("POST", `/nodes/node-1/update?version=${n.Version.Index}`, spec);
    assert.equal(up.status, 200, up.text);
    const after = (await api.call("GET", `/nodes/${api.nodeId}`)).body;
    assert.deepEqual(after.Spec, {
      Labels: { zone: "east" },
      Role: "manager",
      Availability: "drain",
    });
    assert.equal(await count({ "node.label": ["zone=east"] }), 1);

    const stale = await api.call("POST", `/nodes/node-1/update?version=${n.Version.Index}`, spec);
    assert.equal(stale.status, 409);
    assert.match(stale.body.message, /^update out of sequence/);
    const bad = await api.call("POST", "/nodes/node-1/update", { ...spec, Availability: "asleep" });
    assert.equal(bad.status, 400);
    assert.equal(
      bad.body.message,
      'invalid node spec: Availability: must be "active", "pause" or "drain"',
    );
    const badVersion = await api.call("POST", "/nodes/node-1/update?version=abc", spec);
    assert.equal(badVersion.status, 400);
    assert.equal(
      badVersion.body.message,
      'query parameter version must be a whole number, got "abc"',
    );

    const rm = await api.call("DELETE", "/nodes/node-1?force=true");
    assert.equal(rm.status, 400);
    assert.match(
      rm.body.message,
      /is a cluster manager .* must be demoted to worker before removal/,
    );
    assert.equal(DESCRIPTION.hostname, "node-1");
  }, { projections: false });
});

Deno.test("secrets and configs: create, list, inspect, update labels only, remove", async () => {
  await withApi(async (api) => {
    for (const kind of ["secret", "config"] as const) {
      const base = `/${kind}s`;
      const created = await api.call("POST", `${base}/create`, {
        Name: "app",
        Labels: { env: "prod" },
        Data: btoa("hello"),
      });
      assert.equal(created.status, 201, created.text);
      const id = created.body.ID;
      assert.match(id, /^[0-9a-z]{25}$/);

      const one = (await api.call("GET", `${base}/app`)).body;
      assert.equal(one.ID, id);
      assert.equal(one.Spec.Name, "app");
      assert.deepEqual(one.Spec.Labels, { env: "prod" });
      assert.equal(
        one.Spec.Data,
        kind === "config" ? btoa("hello") : undefined,
        "secrets never show",
      );

      await api.call("POST", `${base}/create`, { Name: "other", Data: btoa("x") });
      const names = async (f: Record<string, string[]>) =>
        (await api.call("GET", `${base}?filters=${filters(f)}`)).body.map((
          s: { Spec: { Name: string } },
        ) => s.Spec.Name);
      assert.deepEqual(await names({}), ["app", "other"]);
      assert.deepEqual(await names({ name: ["ap"] }), ["app"]);
      assert.deepEqual(await names({ names: ["other"] }), ["other"]);
      assert.deepEqual(await names({ label: ["env=prod"] }), ["app"]);

      const dup = await api.call("POST", `${base}/create`, { Name: "app", Data: btoa("y") });
      assert.equal(dup.status, 409);
      assert.equal(
        dup.body.message,
        `name conflicts with an existing object: ${kind} app already exists`,
      );
      const empty = await api.call("POST", `${base}/create`, { Name: "void", Data: "" });
      assert.equal(empty.status, 400);
      assert.match(empty.body.message, /data must be larger than 0 and less than 500 KB/);
      const notB64 = await api.call("POST", `${base}/create`, { Name: "v", Data: "%%%" });
      assert.equal(notB64.status, 400);
      assert.equal(notB64.body.message, `invalid ${kind} spec: Data: must be base64-encoded bytes`);

      const up = await api.call("POST", `${base}/${id}/update?version=${one.Version.Index}`, {
        ...one.Spec,
        Labels: { env: "dev" },
      });
      assert.equal(up.status, 200, up.text);
      assert.deepEqual((await api.call("GET", `${base}/${id}`)).body.Spec.Labels, { env: "dev" });
      const rename = await api.call("POST", `${base}/${id}/update`, { Name: "renamed" });
      assert.equal(rename.status, 400);
      assert.match(rename.body.message, /^only updates to Labels are allowed/);

      const rm = await api.call("DELETE", `${base}/app`);
      assert.equal(rm.status, 204);
      const gone = await api.call("GET", `${base}/app`);
      assert.equal(gone.status, 404);
      assert.equal(gone.body.message, `${kind} app not found`);
    }
  }, { projections: false });
});

Deno.test("networks: create, list, inspect, remove", async () => {
  await withApi(async (api) => {
    // What `docker network create -d overlay backend` sends.
    const created = await api.call("POST", "/networks/create", {
      Driver: "overlay",
      Scope: "",
      IPAM: { Driver: "default", Options: {}, Config: [] },
      Internal: false,
      Attachable: true,
      Ingress: false,
      ConfigOnly: false,
      ConfigFrom: null,
      Options: {},
      Labels: { team: "a" },
      Name: "backend",
      CheckDuplicate: true,
    });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.body), ["Id", "Warning"]);
    const id = created.body.Id;

    const net = (await api.call("GET", "/networks/backend")).body;
    assert.equal(net.Id, id);
    assert.equal(net.Name, "backend");
    assert.equal(net.Driver, "overlay");
    assert.equal(net.Scope, "swarm");
    assert.equal(net.Attachable, true);
    assert.deepEqual(net.Labels, { team: "a" });

    // Shoal's subnets are loopback ones (see the allocator's ipam.ts).
    const outside = await api.call("POST", "/networks/create", {
      Name: "front",
      IPAM: { Config: [{ Subnet: "10.9.0.0/24" }] },
    });
    assert.equal(outside.status, 400);
    assert.match(
      outside.body.message,
      /^invalid subnet 10\.9\.0\.0\/24: .* inside 127\.0\.0\.0\/8/,
    );
    const sub = await api.call("POST", "/networks/create", {
      Name: "front",
      IPAM: { Config: [{ Subnet: "127.9.0.0/24" }] },
    });
    assert.equal(sub.status, 201);
    assert.deepEqual((await api.call("GET", "/networks/front")).body.IPAM.Config, [
      { Subnet: "127.9.0.0/24" },
    ], "asked for (no allocator runs here)");

    const names = async (f: Record<string, string[]>) =>
      (await api.call("GET", `/networks?filters=${filters(f)}`)).body.map((n: { Name: string }) =>
        n.Name
      );
    assert.deepEqual(await names({}), ["backend", "front"]);
    assert.deepEqual(await names({ label: ["team"] }), ["backend"]);
    assert.deepEqual(await names({ driver: ["overlay"] }), ["backend", "front"]);
    assert.deepEqual(await names({ dangling: ["true"] }), ["backend", "front"]);

    const dup = await api.call("POST", "/networks/create", { Name: "backend" });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.message, "network with name backend already exists");
    const v6 = await api.call("POST", "/networks/create", { Name: "v6", EnableIPv6: true });
    assert.equal(v6.status, 400);
    assert.equal(
      v6.body.message,
      "invalid network spec: EnableIPv6: IPv6 is not supported by Shoal",
    );

    assert.equal((await api.call("DELETE", `/networks/${id}`)).status, 204);
    assert.equal((await api.call("GET", `/networks/${id}`)).status, 404);
  }, { projections: false });
});
