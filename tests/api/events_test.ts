/**
 * `GET /events`: Docker-style events derived from the committed log, live and from history.
 */
import assert from "node:assert/strict";
import { createApiHandler } from "../../web/api.ts";
import type { DockerEvent } from "../../web/docker/events.ts";
import { filters, withApi } from "./_harness.ts";

function spec(name: string, replicas: number, env?: string[]) {
  return {
    Name: name,
    TaskTemplate: { ContainerSpec: { Image: "busybox:1", Env: env } },
    Mode: { Replicated: { Replicas: replicas } },
  };
}

/** Reads JSON lines from a streaming answer until `n` arrived or the stream ends. */
async function readEvents(res: Response, n = Infinity, ms = 3_000): Promise<DockerEvent[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const out: DockerEvent[] = [];
  let buf = "";
  const deadline = setTimeout(() => reader.cancel(), ms);
  try {
    while (out.length < n) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        out.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    }
  } finally {
    clearTimeout(deadline);
    await reader.cancel().catch(() => {});
  }
  return out;
}

const brief = (e: DockerEvent) => `${e.Type} ${e.Action} ${e.Actor.Attributes.name}`;

Deno.test("events stream live, with Docker's fields and .old/.new attributes", async () => {
  await withApi(async (api) => {
    const res = await api.handler(new Request("http://shoal.test/v1.41/events"));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    const events = readEvents(res, 5);

    const id = (await api.call("POST", "/services/create", spec("web", 2))).body.ID;
    let svc = (await api.call("GET", "/services/web")).body;
    const scaled = { ...svc.Spec, Mode: { Replicated: { Replicas: 3 } } };
    await api.call("POST", `/services/web/update?version=${svc.Version.Index}`, scaled);
    svc = (await api.call("GET", "/services/web")).body;
    const changed = structuredClone(svc.Spec);
    changed.TaskTemplate.ContainerSpec.Image = "busybox:2";
    await api.call("POST", `/services/web/update?version=${svc.Version.Index}`, changed);
    await api.call("POST", "/secrets/create", { Name: "pw", Data: btoa("x") });
    await api.call("DELETE", "/services/web");

    const got = await events;
    assert.deepEqual(got.map(brief), [
      "service create web",
      "service update web",
      "service update web",
      "secret create pw",
      "service remove web",
    ]);
    const [create, scale, image] = got;
    assert.equal(create.Actor.ID, id);
    assert.equal(create.scope, "swarm");
    assert.equal(create.time, Math.floor(create.timeNano / 1e9));
    assert.ok(Math.abs(create.timeNano / 1e6 - Date.now()) < 10_000);
    assert.deepEqual(scale.Actor.Attributes, {
      name: "web",
      "replicas.old": "2",
      "replicas.new": "3",
    });
    assert.deepEqual(image.Actor.Attributes, {
      name: "web",
      "image.old": "busybox:1",
      "image.new": "busybox:2",
      "updatestate.new": "updating",
    });
  }, { projections: false });
});

Deno.test("events from the past: since and until, filters, and a fold of the whole log", async () => {
  await withApi(async (api) => {
    await new Promise((r) => setTimeout(r, 10));
    const start = Date.now();
    await api.call("POST", "/services/create", spec("web", 1));
    await api.call("POST", "/services/create", spec("db", 1));
    await api.call("POST", "/networks/create", { Name: "net" });
    await api.call(
      "POST",
      `/nodes/node-1/update`,
      { Role: "manager", Availability: "drain" },
    );
    // A stale update is rejected by the fold: it must not show as an event.
    const web = api.manager.state.serviceByName("web")!;
    await api.call("POST", "/services/web/update?version=1", spec("web", 5));
    assert.equal(api.manager.state.serviceByName("web")!.version, web.version);

    const now = (Date.now() + 1) / 1000;
    const since = (start / 1000).toFixed(3);
    const query = (q: string) =>
      api.handler(new Request(`http://shoal.test/events?since=${since}&until=${now}${q}`));

    const all = await readEvents(await query(""));
    assert.deepEqual(all.map(brief), [
      "service create web",
      "service create db",
      "network create net",
      "node update node-1",
    ]);
    assert.deepEqual(all[3].Actor.Attributes, {
      name: "node-1",
      "availability.old": "active",
      "availability.new": "drain",
    });
    const services = await readEvents(await query(`&filters=${filters({ type: ["service"] })}`));
    assert.deepEqual(services.map(brief), ["service create web", "service create db"]);
    const db = await readEvents(await query(`&filters=${filters({ service: ["db"] })}`));
    assert.deepEqual(db.map(brief), ["service create db"]);
    const creates = await readEvents(await query(`&filters=${filters({ event: ["update"] })}`));
    assert.deepEqual(creates.map(brief), ["node update node-1"]);

    // A handler made now has no buffer reaching back: it folds the log again, from entry 1,
    // and finds the same events, the swarm's own first ones included.
    const fresh = createApiHandler(api.manager, { nodeId: api.nodeId });
    try {
      const folded = await readEvents(
        await fresh(new Request(`http://shoal.test/events?since=0&until=${now}`)),
      );
      assert.deepEqual(folded.map(brief), [
        "node create node-1",
        "node update node-1",
        "service create web",
        "service create db",
        "network create net",
        "node update node-1",
      ]);
      assert.deepEqual(folded.slice(2), all);
    } finally {
      fresh.close();
    }

    const bad = await api.call("GET", "/events?since=yesterday");
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /since must be a Unix timestamp/);
    const badFilter = await api.call("GET", `/events?filters=${filters({ colour: ["x"] })}`);
    assert.equal(badFilter.status, 400);
  }, { projections: false });
});

Deno.test("closing the handler ends open event streams", async () => {
  await withApi(async (api) => {
    const res = await api.handler(new Request("http://shoal.test/events"));
    const events = readEvents(res, Infinity, 10_000);
    await api.call("POST", "/configs/create", { Name: "c", Data: btoa("x") });
    await new Promise((r) => setTimeout(r, 20));
    api.handler.close();
    const got = await events;
    assert.deepEqual(got.map(brief), ["config create c"]);
  }, { projections: false });
});
