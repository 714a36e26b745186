/**
 * Shoal's own routes (`/shoal/v1/`) and the dashboard's files, over a real manager with its
 * projections (orchestrator, allocator, scheduler; no agent, so tasks stop at `assigned`), through
 * the API handler without a socket.
 */
import assert from "node:assert/strict";
import { ServiceSpec } from "../../events/schema.ts";
import { type ApiFixture, until, withApi } from "../../tests/api/_harness.ts";

function spec(name: string, replicas: number, constraints: string[] = []) {
  return ServiceSpec.parse({
    name,
    task: {
      runtime: { kind: "process", command: "/bin/sleep", args: ["600"] },
      placement: { constraints },
    },
    mode: { kind: "replicated", replicas },
  });
}

/** Creates service `name` and waits until `replicas` of its tasks are assigned. */
async function createAssigned(api: ApiFixture, name: string, replicas: number): Promise<number> {
  await api.manager.execute({ kind: "CreateService", spec: spec(name, replicas) }, {
    by: "user:service.create",
  });
  return await assigned(api, name, replicas);
}

/** Waits until `n` tasks of `name` are assigned; returns the index then. */
async function assigned(api: ApiFixture, name: string, n: number): Promise<number> {
  const s = api.manager.state;
  await until(`${n} assigned tasks of ${name}`, () => {
    const svc = s.serviceByName(name);
    return svc !== undefined &&
      [...s.tasksOf(svc.id)].filter((t) => t.nodeId !== "" && t.desiredState <= 512).length === n;
  });
  // Let the projections settle (nothing left to propose).
  let index = -1;
  while (index !== s.index) {
    index = s.index;
    await new Promise((r) => setTimeout(r, 30));
  }
  return index;
}

/** An error answer: the status, and `{message, code}`. */
function assertError(
  res: { status: number; body: { message?: string; code?: string } },
  status: number,
  message: RegExp,
) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(typeof res.body.code, "string");
  assert.match(res.body.message ?? "", message);
}

Deno.test("state: live, at an index and at a time; bad points are 400s naming the parameter", async () => {
  await withApi(async (api) => {
    const before = await createAssigned(api, "web", 1);
    await api.manager.execute({ kind: "ScaleService", service: "web", replicas: 3 }, {
      by: "user:service.scale",
    });
    const after = await assigned(api, "web", 3);

    const live = await api.call("GET", "/shoal/v1/state");
    assert.equal(live.status, 200);
    assert.equal(live.body.index, after);
    assert.equal(live.body.live, true);
    assert.equal(live.body.nodes[0].name, "node-1");
    assert.equal(live.body.nodes[0].status, "ready");
    assert.equal(live.body.nodes[0].leader, true);
    const web = live.body.services.find((s: { name: string }) => s.name === "web");
    assert.equal(web.desired, 3);
    assert.equal(web.running, 0, "no agent runs them");
    assert.equal(web.image, "/bin/sleep 600");
    assert.deepEqual(
      live.body.tasks.map((t: { name: string; state: string; node: string; slot: number }) => [
        t.name,
        t.state,
        t.node,
        t.slot,
      ]),
      [["web.1", "assigned", "node-1", 1], ["web.2", "assigned", "node-1", 2], [
        "web.3",
        "assigned",
        "node-1",
        3,
      ]],
    );
    assert.equal(live.body.tasks[0].desired, "running");

    const then = await api.call("GET", `/shoal/v1/state?at=${before}`);
    assert.equal(then.status, 200);
    assert.equal(then.body.index, before);
    assert.equal(then.body.live, false);
    assert.equal(then.body.lastIndex, after);
    assert.equal(then.body.tasks.length, 1);
    assert.equal(then.body.services[0].desired, 1);
    assert.ok(then.body.at > 0);

    const zero = await api.call("GET", "/shoal/v1/state?at=0");
    assert.equal(zero.body.cluster, null);
    assert.deepEqual(zero.body.nodes, []);

    const byTime = await api.call(
      "GET",
      `/shoal/v1/state?time=${new Date(then.body.at).toISOString()}`,
    );
    assert.equal(byTime.status, 200);
    assert.ok(byTime.body.index >= before && byTime.body.at === then.body.at);

    assertError(await api.call("GET", "/shoal/v1/state?at=x"), 400, /parameter at/);
    assertError(
      await api.call("GET", `/shoal/v1/state?at=${after + 5}`),
      400,
      new RegExp(`query parameter at: no index ${after + 5} in this log.* to ${after}`),
    );
    assertError(await api.call("GET", "/shoal/v1/state?time=yesterday"), 400, /parameter time/);
    assertError(await api.call("GET", "/shoal/v1/state?at=1&time=2020-01-01"), 400, /not both/);
  });
});

Deno.test("diff: what changed between two points, as JSON and as text", async () => {
  await withApi(async (api) => {
    const before = await createAssigned(api, "web", 1);
    await api.manager.execute({ kind: "ScaleService", service: "web", replicas: 2 }, {
      by: "user:service.scale",
    });
    const after = await assigned(api, "web", 2);

    const d = await api.call("GET", `/shoal/v1/diff?from=${before}&to=${after}`);
    assert.equal(d.status, 200);
    assert.equal(d.body.from, before);
    assert.equal(d.body.to, after);
    assert.equal(d.body.truncated, false);
    const created = d.body.changes.filter((c: { change: string }) => c.change === "created");
    assert.deepEqual(created.map((c: { kind: string; name: string }) => `${c.kind} ${c.name}`), [
      "task web.2",
    ]);
    const svc = d.body.changes.find((c: { kind: string }) => c.kind === "service");
    assert.ok(
      svc.fields.some((f: { path: string; from: number; to: number }) =>
        f.path === "spec.mode.replicas" && f.from === 1 && f.to === 2
      ),
    );
    assert.ok(d.body.fromAt > 0 && d.body.toAt >= d.body.fromAt);

    const toNow = await api.call("GET", `/shoal/v1/diff?from=${before}`);
    assert.equal(toNow.body.to, api.manager.state.index);

    const text = await api.call("GET", `/shoal/v1/diff?from=${before}&to=${after}&format=text`);
    assert.match(text.headers.get("content-type")!, /text\/plain/);
    assert.match(text.text, /\+ task web\.2/);
    assert.match(text.text, /spec\.mode\.replicas: 1 → 2/);

    const limited = await api.call("GET", `/shoal/v1/diff?from=0&limit=1`);
    assert.equal(limited.body.changes.length, 1);
    assert.equal(limited.body.truncated, true);

    assertError(await api.call("GET", "/shoal/v1/diff"), 400, /parameter from is required/);
    assertError(await api.call("GET", "/shoal/v1/diff?from=1&to=abc"), 400, /parameter to/);
    assertError(await api.call("GET", "/shoal/v1/diff?from=1&format=xml"), 400, /format/);
    assertError(await api.call("GET", "/shoal/v1/diff?from=1&limit=0"), 400, /limit/);
  });
});

Deno.test("why: a task's causes back to the user's command, with the scheduler's decision", async () => {
  await withApi(async (api) => {
    await createAssigned(api, "web", 1);
    await api.manager.execute({ kind: "ScaleService", service: "web", replicas: 2 }, {
      by: "user:service.scale",
    });
    await assigned(api, "web", 2);

    const r = await api.call("GET", "/shoal/v1/why/task/web.2");
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.kind, "task");
    assert.equal(r.body.name, "web.2");
    assert.match(r.body.summary, /assigned on node-1/);
    const assign = r.body.steps.find((s: { type: string }) => s.type === "TaskAssigned");
    assert.equal(assign.by, "scheduler");
    assert.equal(assign.decision.chosen.name, "node-1");
    assert.equal(assign.decision.nodesConsidered, 1);
    assert.deepEqual(assign.decision.passed.map((n: { name: string }) => n.name), ["node-1"]);
    const chain = assign.causes.map((c: { event?: { type: string; by: string } }) =>
      `${c.event?.type} ${c.event?.by}`
    );
    assert.equal(chain[chain.length - 1], "ServiceUpdated user:service.scale");
    assert.ok(
      r.body.origin.some((o: { event?: { by: string } }) => o.event?.by === "user:service.scale"),
    );

    // By id, at an earlier index, and as text.
    const id = r.body.id;
    const earlier = await api.call("GET", `/shoal/v1/why/task/${id}?at=${assign.index - 1}`);
    assert.equal(earlier.status, 200);
    assert.ok(earlier.body.steps.every((s: { index: number }) => s.index < assign.index));
    const text = await api.call("GET", `/shoal/v1/why/task/${id}?format=text`);
    assert.match(text.text, /decision: 1 node considered; chose node-1/);

    const svc = await api.call("GET", "/shoal/v1/why/service/web");
    assert.equal(svc.status, 200);
    assert.equal(svc.body.steps[0].by, "user:service.scale");
    const node = await api.call("GET", "/shoal/v1/why/node/node-1");
    assert.equal(node.status, 200);
    assert.equal(node.body.steps.at(-1).type, "NodeRegistered");

    assertError(await api.call("GET", "/shoal/v1/why/pod/web.1"), 400, /unknown kind "pod"/);
    assertError(await api.call("GET", "/shoal/v1/why/task/nope.9"), 404, /No task nope\.9/);
    assertError(await api.call("GET", "/shoal/v1/why/task/web.1?at=zz"), 400, /parameter at/);
  });
});

Deno.test("why: an unschedulable task names the nodes rejected and by which filter", async () => {
  await withApi(async (api) => {
    await api.manager.execute({
      kind: "CreateService",
      spec: spec("east", 1, ["node.labels.zone==east"]),
    }, { by: "user:service.create" });
    const s = api.manager.state;
    await until(
      "an unschedulable task",
      () => [...s.tasks.values()].some((t) => t.status.err.includes("no suitable node")),
    );
    const r = await api.call("GET", "/shoal/v1/why/task/east.1");
    assert.equal(r.status, 200, r.text);
    const step = r.body.steps.find((x: { type: string }) => x.type === "TaskUnschedulable");
    assert.ok(step, JSON.stringify(r.body.steps.map((x: { type: string }) => x.type)));
    assert.equal(step.decision.chosen, undefined);
    assert.equal(step.decision.rejected[0].name, "node-1");
    assert.match(step.decision.rejected[0].filter, /constraint/i);
  });
});

Deno.test("why: a removed object is still explained by its id", async () => {
  await withApi(async (api) => {
    await createAssigned(api, "gone", 1);
    const id = api.manager.state.serviceByName("gone")!.id;
    await api.manager.execute({ kind: "RemoveService", service: "gone" }, {
      by: "user:service.rm",
    });
    const r = await api.call("GET", `/shoal/v1/why/service/${id}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.exists, false);
    assert.equal(r.body.steps[0].type, "ServiceRemoved");
  });
});

Deno.test("replay: each entry's events and the changes they made", async () => {
  await withApi(async (api) => {
    const last = await createAssigned(api, "web", 1);
    const r = await api.call("GET", `/shoal/v1/replay?from=1&to=${last}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.steps.length, last);
    assert.equal(r.body.next, undefined);
    assert.deepEqual(r.body.steps[0].events.map((e: { type: string }) => e.type), [
      "ClusterCreated",
      "NodeRegistered",
    ]);
    const created = r.body.steps.find((s: { by: string }) => s.by === "user:service.create");
    assert.equal(created.changes[0].change, "created");
    assert.equal(created.changes[0].name, "web");

    const one = await api.call("GET", "/shoal/v1/replay?from=2");
    assert.equal(one.body.from, 2);
    assert.equal(one.body.to, last, "to defaults to 100 entries on, clamped to the last");
    const text = await api.call("GET", `/shoal/v1/replay?from=1&to=1&format=text`);
    assert.match(text.text, /^#1 .* by user:swarm\.init, 2 events/);

    assertError(await api.call("GET", "/shoal/v1/replay"), 400, /parameter from is required/);
    assertError(
      await api.call("GET", "/shoal/v1/replay?from=0"),
      400,
      /parameter from: no index 0/,
    );
    assertError(await api.call("GET", "/shoal/v1/replay?from=3&to=2"), 400, /to \(2\).*from \(3\)/);
  });
});

Deno.test("bisect: the first index at which a condition holds; a bad condition names its column", async () => {
  await withApi(async (api) => {
    await createAssigned(api, "web", 1);
    await api.manager.execute({ kind: "ScaleService", service: "web", replicas: 3 }, {
      by: "user:service.scale",
    });
    await assigned(api, "web", 3);
    const until = encodeURIComponent("tasks(web, state=assigned) >= 3");
    const r = await api.call("GET", `/shoal/v1/bisect?until=${until}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.found, true);
    assert.ok(r.body.at > 0);
    const at = await api.call("GET", `/shoal/v1/state?at=${r.body.index}`);
    const before = await api.call("GET", `/shoal/v1/state?at=${r.body.index - 1}`);
    const count = (b: { tasks: { state: string }[] }) =>
      b.tasks.filter((t) => t.state === "assigned").length;
    assert.equal(count(at.body), 3);
    assert.ok(count(before.body) < 3, "the index before it does not hold");

    const binary = await api.call("GET", `/shoal/v1/bisect?until=${until}&mode=binary`);
    assert.equal(binary.body.index, r.body.index);
    assert.ok(binary.body.tested < r.body.tested || r.body.tested <= 3);

    const never = await api.call(
      "GET",
      `/shoal/v1/bisect?until=${encodeURIComponent("services() > 5")}&from=2`,
    );
    assert.equal(never.body.found, false);
    assert.equal(never.body.from, 2);

    const bad = await api.call(
      "GET",
      `/shoal/v1/bisect?until=${encodeURIComponent("running(web) << 3")}`,
    );
    assertError(bad, 400, /^query parameter until: Bad condition at column 15: expected a value/);
    assertError(await api.call("GET", "/shoal/v1/bisect"), 400, /parameter until is required/);
    assertError(
      await api.call("GET", `/shoal/v1/bisect?until=${until}&mode=fast`),
      400,
      /parameter mode/,
    );
    assertError(await api.call("GET", `/shoal/v1/bisect?until=${until}&to=9999`), 400, /to/);
  });
});

Deno.test("timeline and log: the log's extent, sampled times, the user's commands", async () => {
  await withApi(async (api) => {
    const last = await createAssigned(api, "web", 1);
    const t = await api.call("GET", "/shoal/v1/timeline?samples=3");
    assert.equal(t.status, 200);
    assert.equal(t.body.firstIndex, 1);
    assert.equal(t.body.lastIndex, last);
    assert.deepEqual(t.body.points.map((p: { index: number }) => p.index), [
      1,
      Math.round(1 + (last - 1) / 2),
      last,
    ]);
    assert.deepEqual(t.body.marks.map((m: { by: string }) => m.by), [
      "user:swarm.init",
      "user:service.create",
    ]);
    assertError(await api.call("GET", "/shoal/v1/timeline?samples=0"), 400, /samples/);

    const log = await api.call("GET", "/shoal/v1/log?from=1&to=1");
    assert.equal(log.body.entries.length, 1);
    assert.match(log.body.entries[0].time, /^\d{4}-\d\d-\d\dT/);
  });
});

/** Reads server-sent events from a response until `done` says stop. */
async function readEvents(
  res: Response,
  done: (events: { event: string; id?: string; data: unknown }[]) => boolean,
) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: { event: string; id?: string; data: unknown }[] = [];
  let buffer = "";
  try {
    while (!done(events)) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const fields = Object.fromEntries(
          block.split("\n").filter((l) => !l.startsWith(":") && l.includes(": ")).map((l) => [
            l.slice(0, l.indexOf(": ")),
            l.slice(l.indexOf(": ") + 2),
          ]),
        );
        if (fields.event) {
          events.push({ event: fields.event, id: fields.id, data: JSON.parse(fields.data) });
        }
      }
    }
  } finally {
    await reader.cancel();
  }
  return events;
}

Deno.test("stream: a hello, then every applied entry; resumes after Last-Event-ID", async () => {
  await withApi(async (api) => {
    const start = await createAssigned(api, "web", 1);
    const res = await api.handler(new Request("http://shoal.test/shoal/v1/stream"));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const reading = readEvents(
      res,
      (evs) =>
        evs.some((e) => (e.data as { types?: object }).types?.hasOwnProperty("TaskAssigned")),
    );
    await api.manager.execute({ kind: "ScaleService", service: "web", replicas: 2 }, {
      by: "user:service.scale",
    });
    const events = await reading;
    assert.equal(events[0].event, "hello");
    assert.equal((events[0].data as { lastIndex: number }).lastIndex, start);
    const scale = events.find((e) => (e.data as { by?: string }).by === "user:service.scale")!;
    assert.equal(scale.event, "entry");
    assert.equal(scale.id, String(start + 1));
    assert.deepEqual(scale.data, {
      index: start + 1,
      at: (scale.data as { at: number }).at,
      by: "user:service.scale",
      applied: true,
      reason: (scale.data as { reason: string }).reason,
      types: { ServiceUpdated: 1 },
      events: [{
        type: "ServiceUpdated",
        kind: "service",
        id: api.manager.state.serviceByName("web")!.id,
        name: "web",
        summary: "service web updated: 2 replicas",
      }],
      more: 0,
    });
    const assign = events.find((e) => (e.data as { by?: string }).by === "scheduler")!;
    assert.equal(
      (assign.data as { events: { summary: string }[] }).events[0].summary,
      "web.2 → node-1",
    );

    // A client that comes back after entry `start` first gets what it missed.
    const again = await api.handler(
      new Request("http://shoal.test/shoal/v1/stream", {
        headers: { "last-event-id": String(start) },
      }),
    );
    const missed = await readEvents(again, (evs) => evs.some((e) => e.event === "hello"));
    assert.equal(missed[0].id, String(start + 1));
    assert.equal(missed.at(-1)!.event, "hello");
    assert.equal(missed.length - 1, api.manager.state.index - start);

    const head = await api.call("HEAD", "/shoal/v1/stream");
    assert.equal(head.status, 200);
    assert.match(head.headers.get("content-type")!, /^text\/event-stream/);
    assert.equal(head.text, "");

    const bad = await api.call("GET", "/shoal/v1/stream?from=x");
    assertError(bad, 400, /from/);
  });
});

Deno.test("stream: closing the API ends open streams", async () => {
  await withApi(async (api) => {
    const res = await api.handler(new Request("http://shoal.test/shoal/v1/stream"));
    const reader = res.body!.getReader();
    await reader.read();
    api.handler.close();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
  });
});

Deno.test("the dashboard is served at /ui/, and / leads there", async () => {
  await withApi(async (api) => {
    const root = await api.call("GET", "/");
    assert.equal(root.status, 302);
    assert.equal(root.headers.get("location"), "/ui/");
    const page = await api.call("GET", "/ui/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.match(page.headers.get("content-security-policy")!, /default-src 'self'/);
    assert.match(page.text, /<script type="module" src="app.js">/);
    for (const [file, type] of [["app.js", /javascript/], ["style.css", /css/]] as const) {
      const res = await api.call("GET", `/ui/${file}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type")!, type);
    }
    assertError(await api.call("GET", "/ui/secret.txt"), 404, /page not found/);
    assertError(await api.call("GET", "/ui/..%2Fapi.ts"), 404, /page not found/);
  }, { projections: false });
});
