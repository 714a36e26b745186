/**
 * Docker's system and swarm endpoints, and the router's answers to what it does not know.
 */
import assert from "node:assert/strict";
import { withApi } from "./_harness.ts";

Deno.test("/_ping answers OK with the headers the docker CLI negotiates with", async () => {
  await withApi(async (api) => {
    for (const method of ["GET", "HEAD"]) {
      for (const path of ["/_ping", "/v1.41/_ping"]) {
        const res = await api.call(method, path);
        assert.equal(res.status, 200, `${method} ${path}`);
        assert.equal(res.text, method === "GET" ? "OK" : "");
        assert.equal(res.headers.get("api-version"), "1.41");
        assert.equal(res.headers.get("ostype"), "linux");
        assert.equal(res.headers.get("swarm"), "active/manager");
      }
    }
  }, { projections: false });
});

Deno.test("/version and /info describe the server and the swarm", async () => {
  await withApi(async (api) => {
    const v = await api.call("GET", "/v1.41/version");
    assert.equal(v.status, 200);
    assert.equal(v.body.ApiVersion, "1.41");
    assert.equal(v.body.MinAPIVersion, "1.24");
    assert.equal(v.body.Components[0].Details.ApiVersion, "1.41");

    const info = await api.call("GET", "/info");
    assert.equal(info.status, 200);
    const swarm = info.body.Swarm;
    assert.equal(swarm.NodeID, api.nodeId);
    assert.equal(swarm.NodeAddr, "127.0.0.1");
    assert.equal(swarm.LocalNodeState, "active");
    assert.equal(swarm.ControlAvailable, true);
    assert.equal(swarm.Managers, 1);
    assert.equal(swarm.Nodes, 1);
    const cluster = api.manager.state.cluster!;
    assert.equal(swarm.Cluster.ID, cluster.id);
    assert.equal(swarm.Cluster.Version.Index, cluster.version);
    assert.match(swarm.Cluster.CreatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit, 5);
    assert.equal(swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod, 5_000_000_000, "ns");
    assert.deepEqual(swarm.RemoteManagers, [{ NodeID: api.nodeId, Addr: "127.0.0.1:4375" }]);
    assert.equal(swarm.Cluster.JoinTokens, undefined, "/info never shows join tokens");
    assert.equal(info.body.NCPU, 4);
  }, { projections: false });
});

Deno.test("/swarm shows the join tokens; /swarm/update changes the spec and rotates tokens", async () => {
  await withApi(async (api) => {
    const before = await api.call("GET", "/swarm");
    assert.equal(before.status, 200);
    assert.match(before.body.JoinTokens.Worker, /^SWMTKN-1-/);
    assert.match(before.body.TLSInfo.TrustRoot, /BEGIN CERTIFICATE/);
    assert.ok(before.body.TLSInfo.CertIssuerPublicKey.length > 20);

    const spec = structuredClone(before.body.Spec);
    spec.Orchestration.TaskHistoryRetentionLimit = 10;
    spec.Dispatcher.HeartbeatPeriod = 2_000_000_000;
    const v = before.body.Version.Index;
    const up = await api.call("POST", `/swarm/update?version=${v}&rotateWorkerToken=true`, spec);
    assert.equal(up.status, 200, up.text);
    const after = await api.call("GET", "/swarm");
    assert.equal(after.body.Spec.Orchestration.TaskHistoryRetentionLimit, 10);
    assert.equal(after.body.Spec.Dispatcher.HeartbeatPeriod, 2_000_000_000);
    assert.equal(api.manager.state.cluster!.spec.dispatcher.heartbeatPeriod, 2_000, "ms inside");
    assert.notEqual(after.body.JoinTokens.Worker, before.body.JoinTokens.Worker);
    assert.equal(after.body.JoinTokens.Manager, before.body.JoinTokens.Manager);

    const stale = await api.call("POST", `/swarm/update?version=${v}`, {
      ...spec,
      Labels: { a: "b" },
    });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.code, "version_conflict");
    assert.match(stale.body.message, /^update out of sequence/);

    const bad = await api.call("POST", "/swarm/update", { ...spec, Raft: { ElectionTick: "x" } });
    assert.equal(bad.status, 400);
    assert.equal(
      bad.body.message,
      "invalid swarm spec: Raft.ElectionTick: must be a number, got a string",
    );
    const ca = await api.call("POST", "/swarm/update", {
      CAConfig: { ExternalCAs: [{ URL: "x" }] },
    });
    assert.equal(ca.status, 400);
    assert.match(ca.body.message, /CAConfig.ExternalCAs: external CAs is not supported by Shoal/);
  }, { projections: false });
});

Deno.test("unknown routes, wrong methods and API versions get Docker's answers", async () => {
  await withApi(async (api) => {
    const missing = await api.call("GET", "/v1.41/containers/json");
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, { message: "page not found", code: "not_found" });

    const method = await api.call("PUT", "/services");
    assert.equal(method.status, 405);
    assert.equal(method.body.code, "method_not_allowed");

    const tooNew = await api.call("GET", "/v1.99/version");
    assert.equal(tooNew.status, 400);
    assert.equal(
      tooNew.body.message,
      "client version 1.99 is too new. Maximum supported API version is 1.41",
    );
    const tooOld = await api.call("GET", "/v1.12/version");
    assert.equal(tooOld.status, 400);
    assert.match(tooOld.body.message, /client version 1.12 is too old/);

    const init = await api.call("POST", "/swarm/init", {});
    assert.equal(init.status, 503);
    assert.match(init.body.message, /already part of a swarm/);
  }, { projections: false });
});

Deno.test("request bodies: not JSON, too large, unknown fields are 4xx with a clear message", async () => {
  await withApi(async (api) => {
    const notJson = await api.call("POST", "/services/create", "{nope");
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.code, "invalid_json");
    assert.match(notJson.body.message, /^the request body is not valid JSON/);

    const huge = await api.call(
      "POST",
      "/secrets/create",
      JSON.stringify({ Name: "x".repeat(3e6) }),
    );
    assert.equal(huge.status, 413);
    assert.equal(huge.body.code, "body_too_large");

    const deep = await api.call(
      "POST",
      "/services/create",
      "[".repeat(100_000) + "]".repeat(100_000),
    );
    assert.equal(deep.status, 400);

    const unknown = await api.call("POST", "/networks/create", { Name: "n", Colour: "blue" });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.message, "invalid network spec: Colour: unknown field");
    assert.equal(api.manager.state.networks.size, 0, "nothing was written");
  }, { projections: false });
});

Deno.test("the Shoal routes still answer", async () => {
  await withApi(async (api) => {
    const state = await api.call("GET", "/shoal/v1/state");
    assert.equal(state.status, 200);
    assert.equal(state.body.nodes[0].id, api.nodeId);
    const log = await api.call("GET", "/shoal/v1/log?from=1");
    assert.equal(log.body.entries[0].events[0].type, "ClusterCreated");
    const bad = await api.call("GET", "/shoal/v1/log?from=x");
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /from must be a whole number/);
  }, { projections: false });
});
