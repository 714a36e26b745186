/**
 * Private names: a real program run through the wrapper sees the task's resolv.conf and hosts,
 * keeps its pid, and the host's files are untouched.
 */
import assert from "node:assert/strict";
import { privateNamesAvailable, privateNamesFiles, withPrivateNames } from "./private_names.ts";

Deno.test("the files name the resolvers and the task", () => {
  assert.deepEqual(
    privateNamesFiles({ nameservers: ["127.0.0.11"], hostname: "web.1.x", addr: "127.1.0.5" }),
    {
      resolvConf: "nameserver 127.0.0.11\noptions ndots:0\n",
      hosts:
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.1.0.5\tweb.1.x\n",
    },
  );
});

Deno.test({
  name: "a program run with private names reads them, and the host's files stay as they were",
  ignore: !(await privateNamesAvailable()),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "shoal-names-" });
    const hostResolv = await Deno.readTextFile("/etc/resolv.conf");
    try {
      const run = await withPrivateNames({
        dir,
        nameservers: ["127.0.0.11"],
        hostname: "web.1.abc",
        addr: "127.1.0.5",
        program: "/bin/sh",
        args: ["-c", 'echo "$$"; cat /etc/resolv.conf /etc/hosts'],
      });
      const child = new Deno.Command(run.program, { args: run.args, stdout: "piped" }).spawn();
      const out = new TextDecoder().decode((await child.output()).stdout);
      const [pid, ...rest] = out.split("\n");
      assert.equal(Number(pid), child.pid, "the program keeps the pid the agent spawned");
      const text = rest.join("\n");
      assert.match(text, /^nameserver 127\.0\.0\.11$/m);
      assert.match(text, /^127\.1\.0\.5\tweb\.1\.abc$/m);
      assert.equal(await Deno.readTextFile("/etc/resolv.conf"), hostResolv);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
