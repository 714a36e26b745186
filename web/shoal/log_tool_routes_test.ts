/**
 * The log tools' routes (`/shoal/v1/log/...`) through the API handler, over a manager whose log
 * is a {@linkcode SqliteLog} keeping snapshots.
 */
import assert from "node:assert/strict";
import { SecretSpec, ServiceSpec } from "../../events/schema.ts";
import { SqliteLog } from "../../events/sqlite_log.ts";
import { sqliteLogSnapshots } from "../../events/stored_log.ts";
import { Manager } from "../../actors/manager.ts";
import { orchestrator } from "../../actors/projections/orchestrator/decide.ts";
import { snapshot } from "../../actors/snapshot.ts";
import { createApiHandler } from "../api.ts";

const spec = (replicas: number) =>
  ServiceSpec.parse({
    name: "web",
    task: { runtime: { kind: "process", command: "/bin/sleep", args: ["600"] } },
    mode: { kind: "replicated", replicas },
  });

async function settle(manager: Manager): Promise<void> {
  let last = -1;
  while (last !== manager.state.index) {
    last = manager.state.index;
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("the log routes dump snapshots and objects as of an index, and verify the log", async () => {
  const dir = await Deno.makeTempDir();
  const log = new SqliteLog({ path: `${dir}/log.db`, synchronous: "off" });
  const manager = new Manager({ log, projections: [orchestrator] });
  const api = createApiHandler(manager, { logSnapshots: () => sqliteLogSnapshots(log) });
  const get = async (path: string) => {
    const res = await api(new Request(`http://shoal${path}`));
    return { status: res.status, body: await res.json() };
  };
  try {
    await manager.start();
    await manager.setLeader(true);
    const by = { by: "user:test" };
    await manager.execute({
      kind: "CreateFileObject",
      object: "secret",
      spec: SecretSpec.parse({ name: "pw", data: btoa("do-not-show") }),
    }, by);
    await manager.execute({ kind: "CreateService", spec: spec(1) }, by);
    await settle(manager);
    const before = manager.state.index;
    log.saveSnapshot(before, snapshot(manager.state));
    await manager.execute({ kind: "ScaleService", service: "web", replicas: 2 }, by);
    await settle(manager);

    const snaps = await get("/shoal/v1/log/snapshots");
    assert.equal(snaps.status, 200);
    assert.deepEqual(snaps.body.map((s: { index: number }) => s.index), [before]);
    assert.equal(snaps.body[0].summary.tasks, 1);
    assert.equal(snaps.body[0].state, undefined);
    const full = await get("/shoal/v1/log/snapshots?full=1");
    assert.equal(full.body[0].state.services.length, 1);
    assert.ok(!JSON.stringify(full.body).includes(btoa("do-not-show")));

    assert.equal((await get("/shoal/v1/log/objects/tasks")).body.length, 2);
    assert.equal((await get(`/shoal/v1/log/objects/tasks?at=${before}`)).body.length, 1);
    const web = await get(`/shoal/v1/log/objects/services/web?at=${before}`);
    assert.equal(web.body[0].spec.mode.replicas, 1);
    const secret = await get("/shoal/v1/log/objects/secrets/pw");
    assert.equal(secret.body[0].spec.data, "[REDACTED]");

    const badKind = await get("/shoal/v1/log/objects/volumes");
    assert.equal(badKind.status, 400);
    assert.match(badKind.body.message, /unknown kind "volumes"/);
    const missing = await get("/shoal/v1/log/objects/services/nope");
    assert.equal(missing.status, 404);
    const beyond = await get("/shoal/v1/log/objects/services?at=9999");
    assert.equal(beyond.status, 400);
    assert.match(beyond.body.message, /no index 9999/);

    const verified = await get("/shoal/v1/log/verify");
    assert.equal(verified.status, 200);
    assert.deepEqual(verified.body.problems, []);
    assert.equal(verified.body.entries, manager.state.index);
    assert.deepEqual(verified.body.snapshots.map((s: { result: string }) => s.result), ["ok"]);
    assert.equal(verified.body.live, "ok");
  } finally {
    api.close();
    await manager.stop();
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
});
