import assert from "node:assert/strict";
import { resolveCommand, spawnErrorReason } from "./resolve_command.ts";

Deno.test("resolveCommand finds programs as a shell does", async () => {
  const cwd = Deno.cwd();
  assert.deepEqual(await resolveCommand("sh", { path: "/no/such:/bin", cwd }), {
    ok: true,
    path: "/bin/sh",
  });
  assert.deepEqual(await resolveCommand("sh", { path: "", cwd: "/bin" }), {
    ok: true,
    path: "/bin/sh",
  });
  assert.deepEqual(await resolveCommand("./sh", { path: "", cwd: "/bin" }), {
    ok: true,
    path: "/bin/sh",
  });
  assert.deepEqual(await resolveCommand("/tmp", { path: "", cwd }), {
    ok: false,
    reason: "is a directory",
  });
  assert.deepEqual(await resolveCommand("/etc/hostname/x", { path: "", cwd }), {
    ok: false,
    reason: "Not a directory",
  });
});

Deno.test("spawnErrorReason keeps the operating system's words", () => {
  assert.equal(
    spawnErrorReason(new Error("Failed to spawn '/x': No such file or directory (os error 2)")),
    "No such file or directory",
  );
  assert.equal(spawnErrorReason("odd"), "odd");
});
