import assert from "node:assert/strict";
import { ApiClient } from "./client.ts";
import type { Io } from "./command.ts";
import type { Service, Task } from "./docker_types.ts";
import { CliError } from "./format.ts";
import { progressBar, ProgressDisplay, waitOnService } from "./service_progress.ts";

function captureIo(isTty = false, columns = 80) {
  const out: string[] = [];
  const io: Io = {
    out: (t) => {
      out.push(t);
      return Promise.resolve();
    },
    err: () => Promise.resolve(),
    readStdin: () => Promise.resolve(new Uint8Array()),
    isTty,
    columns,
  };
  return { io, text: () => out.join("") };
}

interface Step {
  status?: Service["UpdateStatus"];
  tasks: [slot: number, state: string, err?: string, desired?: string][];
}

/** A manager whose service moves one step per poll (the last step repeats). */
function scripted(steps: Step[], opts: { replicas?: number; upToDateFilter?: boolean } = {}) {
  let poll = -1;
  const template = { ContainerSpec: { Image: "app:2" } };
  const service = (): Service => ({
    ID: "svc1",
    Version: { Index: 1 },
    Spec: {
      Name: "web",
      TaskTemplate: template,
      Mode: { Replicated: { Replicas: opts.replicas ?? 2 } },
      UpdateConfig: { Parallelism: 1, Monitor: 50_000_000, MaxFailureRatio: 0 },
    },
    UpdateStatus: steps[Math.min(poll, steps.length - 1)].status,
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/services/web") {
      poll++;
      return Response.json(service());
    }
    if (url.pathname === "/nodes") return Response.json([{ ID: "n1", Status: { State: "ready" } }]);
    if (url.pathname === "/tasks") {
      const filters = JSON.parse(url.searchParams.get("filters") ?? "{}");
      if (filters["_up-to-date"] && opts.upToDateFilter === false) {
        return Response.json({ message: "invalid filter '_up-to-date'" }, { status: 400 });
      }
      const step = steps[Math.min(poll, steps.length - 1)];
      const tasks: Task[] = step.tasks.map(([slot, state, err, desired], i) => ({
        ID: `t${i}`,
        ServiceID: "svc1",
        Slot: slot,
        NodeID: "n1",
        DesiredState: desired ?? "running",
        Spec: template,
        Status: { State: state, ...(err ? { Err: err } : {}) },
      }));
      // An old task of another spec, which only the up-to-date filter (or its stand-in) hides.
      tasks.push({
        ID: "old",
        ServiceID: "svc1",
        Slot: 1,
        NodeID: "n1",
        DesiredState: "running",
        Spec: { ContainerSpec: { Image: "app:1" } },
        Status: { State: "running", Err: "old task" },
      });
      return Response.json(
        filters["_up-to-date"] ? tasks.filter((t) => t.ID !== "old") : tasks,
      );
    }
    return Response.json({ message: "not found" }, { status: 404 });
  });
  const client = new ApiClient(`http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`);
  return { client, close: () => server.shutdown() };
}

Deno.test("progress: slots, overall count, verify, converged (plain output)", async () => {
  for (const upToDateFilter of [true, false]) {
    const fake = scripted([
      { status: { State: "updating" }, tasks: [[1, "pending"], [2, "pending"]] },
      { status: { State: "updating" }, tasks: [[1, "running"], [2, "starting"]] },
      { status: { State: "updating" }, tasks: [[1, "running"], [2, "running"]] },
    ], { upToDateFilter });
    const cap = captureIo();
    try {
      await waitOnService(fake.client, cap.io, "web", { pollMs: 5 });
    } finally {
      await fake.close();
    }
    assert.equal(
      cap.text(),
      [
        "overall progress: 0 out of 2 tasks",
        "1/2:  ",
        "2/2:  ",
        "overall progress: 1 out of 2 tasks",
        "overall progress: 2 out of 2 tasks",
        "verify: Waiting 1 seconds to verify that tasks are stable...",
        "verify: Service web converged",
        "",
      ].join("\n"),
      `with the _up-to-date filter: ${upToDateFilter}`,
    );
  }
});

Deno.test("progress: a failing task shows why, and a paused update is an error", async () => {
  const fake = scripted([
    {
      status: { State: "updating" },
      tasks: [[1, "failed", "task: non-zero exit (3)", "shutdown"]],
    },
    {
      status: { State: "paused", Message: "update paused due to failure of task t0" },
      tasks: [[1, "failed", "task: non-zero exit (3)", "shutdown"]],
    },
  ], { replicas: 1 });
  const cap = captureIo();
  try {
    await assert.rejects(
      waitOnService(fake.client, cap.io, "web", { pollMs: 5 }),
      new CliError("service update paused: update paused due to failure of task t0"),
    );
  } finally {
    await fake.close();
  }
  assert.equal(
    cap.text(),
    "overall progress: 0 out of 1 tasks\n1/1:  \n1/1: task: non-zero exit (3)\n",
  );
});

Deno.test("progress: a rollback says so, and ends with its message", async () => {
  const fake = scripted([
    {
      status: { State: "rollback_started", Message: "update rolled back due to failure" },
      tasks: [[1, "running"], [2, "pending"]],
    },
    {
      status: { State: "rollback_completed", Message: "rollback completed" },
      tasks: [[1, "running"], [2, "running"]],
    },
  ]);
  const cap = captureIo();
  try {
    await waitOnService(fake.client, cap.io, "web", { pollMs: 5 });
  } finally {
    await fake.close();
  }
  assert.equal(
    cap.text(),
    [
      "rollback: update rolled back due to failure",
      "overall progress: rolling back update: 0 out of 2 tasks",
      "1/2:  ",
      "2/2:  ",
      "overall progress: rolling back update: 1 out of 2 tasks",
      "overall progress: rolling back update: 2 out of 2 tasks",
      "verify: Waiting 1 seconds to verify that tasks are stable...",
      "verify: Service web converged",
      "rollback: rollback completed",
      "",
    ].join("\n"),
  );
});

Deno.test("progress on a terminal: lines redrawn in place, bars when wide enough", async () => {
  assert.equal(progressBar(9, 9, 120), `[${"=".repeat(50)}>] `);
  assert.equal(progressBar(3, 9, 120), `[${"=".repeat(16)}>${" ".repeat(34)}] `);
  assert.equal(progressBar(9, 9, 100), "", "Docker shows no bar at 110 columns or fewer");
  const cap = captureIo(true, 120);
  const d = new ProgressDisplay(cap.io);
  await d.write({ id: "1/1", action: " " });
  await d.write({ id: "1/1", action: "running  ", current: 9, total: 9 });
  assert.equal(
    cap.text(),
    "\n\x1b[1A\x1b[2K\r1/1:   \r\x1b[1B" +
      `\x1b[1A\x1b[2K\r1/1: running   [${"=".repeat(50)}>] \r\x1b[1B`,
  );
});
