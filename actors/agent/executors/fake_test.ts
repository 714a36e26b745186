import assert from "node:assert/strict";
import { TaskState, type TaskStatus } from "../../../events/schema.ts";
import { collect, sampleTask, testExecutor } from "../_executor_contract.ts";
import { FakeExecutor } from "./fake.ts";

testExecutor("FakeExecutor", () => ({
  make(behaviour, options) {
    const task = sampleTask({ runtime: { kind: "process", command: "fake" } });
    const executor = new FakeExecutor({
      ...options,
      behaviour: behaviour.kind === "exit"
        ? { exitCode: behaviour.code, output: behaviour.output }
        : behaviour.kind === "serve"
        ? { runsUntilStopped: true, output: behaviour.output }
        : { rejectStart: 'task: cannot start "/no/such": No such file or directory' },
    });
    return { executor, task };
  },
}));

Deno.test("FakeExecutor completes in the same call as start()", async () => {
  const executor = new FakeExecutor();
  await executor.prepare(sampleTask({ runtime: { kind: "process", command: "x" } }));
  const status = await executor.start();
  assert.equal(status.state, TaskState.complete);
  assert.deepEqual(await executor.wait(), { code: 0, signal: null });
});

Deno.test("FakeExecutor can be told to be rejected while preparing", async () => {
  const seen: TaskStatus[] = [];
  const executor = new FakeExecutor({
    onStatus: (s) => seen.push(s),
    behaviour: { rejectPrepare: "task: no space left" },
  });
  const status = await executor.prepare(sampleTask({ runtime: { kind: "process", command: "x" } }));
  assert.equal(status.state, TaskState.rejected);
  assert.equal(status.err, "task: no space left");
  assert.equal(status.message, "preparing");
  assert.equal((await executor.start()).state, TaskState.rejected);
  await assert.rejects(executor.wait(), /without running/);
  assert.deepEqual(seen.map((s) => s.state), [
    TaskState.accepted,
    TaskState.preparing,
    TaskState.rejected,
  ]);
});

Deno.test("FakeExecutor picks a behaviour per task, and exit() ends a running one", async () => {
  const executor = new FakeExecutor({
    behaviour: (task) => task.serviceName === "web" ? { runsUntilStopped: true } : {},
  });
  await executor.prepare(sampleTask({ runtime: { kind: "process", command: "x" } }));
  await executor.start();
  assert.equal(executor.running, true);
  executor.print(["late line"], "stderr");
  executor.exit(137, "SIGKILL");
  assert.equal(executor.status.state, TaskState.failed);
  assert.equal(executor.status.err, "task: non-zero exit (137)");
  assert.deepEqual(await executor.wait(), { code: 137, signal: "SIGKILL" });
  assert.deepEqual((await collect(executor.logs())).map((l) => [l.stream, l.text]), [
    ["stderr", "late line"],
  ]);
});
