import assert from "node:assert/strict";
import { logPath, pidPath, runDetached, withoutDetach } from "./detach.ts";
import { UsageError } from "./flags.ts";

Deno.test("withoutDetach drops --detach, -d and --detach=BOOL, and nothing after --", () => {
  assert.deepEqual(
    withoutDetach(["swarm", "init", "--detach", "--data-dir", "x", "-d", "--detach=true"]),
    ["swarm", "init", "--data-dir", "x"],
  );
  assert.deepEqual(withoutDetach(["start", "--", "--detach"]), ["start", "--", "--detach"]);
  assert.throws(() => withoutDetach(["start", "--detach=maybe"]), UsageError);
});

Deno.test("runDetached: returns once the process says it is up, with what it printed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-det-" });
  const printed: string[] = [];
  try {
    // A stand-in node: prints a banner and a log line, then waits (as a node does).
    const script = 'echo "Node up."; echo \'time="x" level=info msg="hi"\' >&2; echo; ' +
      'echo "Press Ctrl-C to stop."; exec sleep 30';
    const code = await runDetached({
      dataDir: dir,
      argv: ["--detach", script],
      out: (t) => Promise.resolve(void printed.push(t)),
      command: ["/bin/sh", "-c"],
    });
    assert.equal(code, 0);
    const pid = Number((await Deno.readTextFile(pidPath(dir))).trim());
    assert.ok(pid > 0);
    assert.equal(
      printed.join(""),
      `Node up.\n\nThe node runs in the background (pid ${pid}, log ${logPath(dir)}).\n` +
        `Stop it with "shoal stop --data-dir ${dir}".\n`,
    );
    assert.match(await Deno.readTextFile(logPath(dir)), /level=info/);
    Deno.kill(-pid, "SIGKILL");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runDetached: a process that exits before it is up fails with its words", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-det-" });
  try {
    await assert.rejects(
      runDetached({
        dataDir: dir,
        argv: ["echo 'Error: the port is taken' >&2; exit 3"],
        out: () => Promise.resolve(),
        command: ["/bin/sh", "-c"],
      }),
      (err: Error) =>
        err.message.startsWith("Error: the port is taken\n\nthe node did not start (exit code 3)"),
    );
    await assert.rejects(Deno.stat(pidPath(dir)), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
