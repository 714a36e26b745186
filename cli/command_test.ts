import assert from "node:assert/strict";
import { type Io, runGroup, type Subcommand } from "./command.ts";
import { UsageError } from "./flags.ts";
import { CliError } from "./format.ts";

function captureIo() {
  const out: string[] = [];
  const io: Io = {
    out: (t) => {
      out.push(t);
      return Promise.resolve();
    },
    err: () => Promise.resolve(),
    readStdin: () => Promise.resolve(new Uint8Array()),
    isTty: false,
    columns: 80,
  };
  return { io, text: () => out.join("") };
}

const ps: Subcommand = {
  name: "ps",
  use: "[OPTIONS] SERVICE [SERVICE...]",
  summary: "List the tasks of one or more services",
  flags: [{ name: "quiet", short: "q", kind: "boolean", description: "Only display task IDs" }],
  args: { min: 1 },
  async run(env, p) {
    await env.io.out(`${p.args.join(",")} quiet=${p.flags.quiet}\n`);
  },
};

const scale: Subcommand = {
  name: "scale",
  use: "SERVICE=REPLICAS",
  summary: "Scale",
  flags: [{ name: "replicas", kind: "string", description: "" }],
  args: { exact: 1 },
  run(env, p) {
    return Promise.resolve(env.badFlag("replicas", String(p.flags.replicas), new Error("bad")));
  },
};

Deno.test("runGroup dispatches, prints help, and words argument errors as Docker", async () => {
  const cap = captureIo();
  assert.equal(await runGroup("service", "Manage services", [ps], ["ps", "-q", "web"], cap.io), 0);
  assert.equal(cap.text(), "web quiet=true\n");

  const help = captureIo();
  await runGroup("service", "Manage services", [ps], ["ps", "--help"], help.io);
  assert.ok(help.text().includes("Usage:  shoal service ps [OPTIONS] SERVICE [SERVICE...]"));
  assert.ok(help.text().includes("-q, --quiet   Only display task IDs"));

  await assert.rejects(
    runGroup("service", "Manage services", [ps], ["ps"], cap.io),
    new CliError(
      "shoal: 'shoal service ps' requires at least 1 argument\n\nUsage:  shoal service ps [OPTIONS] SERVICE [SERVICE...]\n\nSee 'shoal service ps --help' for more information",
    ),
  );
  await assert.rejects(
    runGroup("service", "Manage services", [ps], ["nope"], cap.io),
    /shoal: unknown command: shoal service nope/,
  );
  await assert.rejects(
    runGroup("service", "Manage services", [ps], ["ps", "--nope", "x"], cap.io),
    (err: unknown) =>
      err instanceof UsageError && err.message === "unknown flag: --nope" &&
      err.usage === "shoal service ps [OPTIONS] SERVICE [SERVICE...]",
  );
  await assert.rejects(
    runGroup("service", "Manage services", [scale], ["scale", "--replicas", "x", "a=1"], cap.io),
    (err: unknown) =>
      err instanceof UsageError &&
      err.message === 'invalid argument "x" for "--replicas" flag: bad' &&
      err.commandPath === "shoal service scale",
  );
});
