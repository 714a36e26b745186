import assert from "node:assert/strict";
import { TaskState, type TaskStatus } from "../../events/schema.ts";
import { sampleTask } from "./_executor_contract.ts";
import {
  exitError,
  parseSignal,
  runtimeSettings,
  TaskFailure,
  taskName,
  TaskStatusReporter,
} from "./executor.ts";

Deno.test("TaskStatusReporter only moves forward, and never after the end", () => {
  const seen: TaskStatus[] = [];
  let now = 1_000.7;
  const reporter = new TaskStatusReporter({ onStatus: (s) => seen.push(s), now: () => now++ });
  assert.equal(reporter.status.state, TaskState.assigned);
  assert.equal(reporter.advance("accepted", "accepted"), true);
  assert.equal(reporter.advance("accepted", "again"), false);
  assert.equal(reporter.advance("preparing", "preparing"), true);
  assert.equal(reporter.advance("accepted", "back"), false);
  assert.equal(reporter.advance("running", "started", { runtimeId: "42" }), true);
  assert.equal(reporter.advance("complete", "finished", { exitCode: 0 }), true);
  assert.equal(reporter.ended, true);
  assert.equal(reporter.advance("failed", "late", { err: "x" }), false);
  assert.deepEqual(seen.map((s) => [s.state, s.message]), [
    [TaskState.accepted, "accepted"],
    [TaskState.preparing, "preparing"],
    [TaskState.running, "started"],
    [TaskState.complete, "finished"],
  ]);
  // Whole milliseconds; the runtime id stays once known.
  assert.deepEqual(seen.at(-1), {
    state: TaskState.complete,
    timestamp: 1_004,
    message: "finished",
    err: "",
    exitCode: 0,
    runtimeId: "42",
  });
});

Deno.test("TaskStatusReporter.fail() rejects before starting and fails after, keeping the message", () => {
  const before = new TaskStatusReporter();
  before.advance("preparing", "preparing");
  before.fail("task: no such secret");
  assert.equal(before.status.state, TaskState.rejected);
  assert.equal(before.status.message, "preparing");
  assert.equal(before.status.err, "task: no such secret");

  const after = new TaskStatusReporter();
  after.advance("starting", "starting");
  after.fail("task: non-zero exit (1)", { exitCode: 1 });
  assert.equal(after.status.state, TaskState.failed);
  assert.equal(after.status.exitCode, 1);
});

Deno.test("parseSignal accepts Docker's spellings and refuses others", () => {
  assert.equal(parseSignal("SIGTERM"), "SIGTERM");
  assert.equal(parseSignal("term"), "SIGTERM");
  assert.equal(parseSignal("9"), "SIGKILL");
  assert.equal(parseSignal(" SIGUSR1 "), "SIGUSR1");
  assert.throws(() => parseSignal("SIGFOO"), TaskFailure);
  assert.throws(() => parseSignal("99"), /invalid stop signal "99"/);
});

Deno.test("runtimeSettings reads the runtime, with SwarmKit's defaults", () => {
  const plain = runtimeSettings(sampleTask({ runtime: { kind: "process", command: "x" } }));
  assert.deepEqual(plain, {
    stopSignal: "SIGTERM",
    stopGracePeriodMs: 10_000,
    healthcheck: undefined,
  });
  const tuned = runtimeSettings(sampleTask({
    runtime: {
      kind: "container",
      image: "busybox",
      stopSignal: "SIGQUIT",
      stopGracePeriod: 2_000,
      healthcheck: { test: ["CMD", "true"] },
    },
  }));
  assert.equal(tuned.stopSignal, "SIGQUIT");
  assert.equal(tuned.stopGracePeriodMs, 2_000);
  assert.deepEqual(tuned.healthcheck?.test, ["CMD", "true"]);
});

Deno.test("taskName and exitError read as SwarmKit's", () => {
  const task = sampleTask({ runtime: { kind: "process", command: "x" } });
  assert.equal(taskName(task), "web.1.task1");
  assert.equal(taskName({ ...task, slot: 0 }), "web.node1.task1");
  assert.equal(exitError(3), "task: non-zero exit (3)");
  assert.equal(exitError(137, "unhealthy process"), "task: non-zero exit (137): unhealthy process");
});
