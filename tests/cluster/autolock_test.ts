/**
 * Autolock on a real manager process: `swarm init --autolock` shows the unlock key once; a
 * restarted manager serves nothing but `swarm unlock` until it is given that key (a wrong one is
 * refused); the key rotates and the old one stops working; autolock turns off again. The key is
 * never stored in the data dir.
 */
import assert from "node:assert/strict";
import { freePorts, NodeProcess, shoal, until } from "./_processes.ts";

const root = new URL("../../", import.meta.url).pathname;

/** Runs the CLI with `input` on standard input. */
async function shoalWithInput(args: string[], input: string) {
  const child = new Deno.Command(`${root}shoal`, {
    args,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Whether any file under `dir` contains `needle`. */
async function anyFileHas(dir: string, needle: string): Promise<boolean> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) {
      if (await anyFileHas(path, needle)) return true;
    } else if (e.isFile && (await Deno.readTextFile(path).catch(() => "")).includes(needle)) {
      return true;
    }
  }
  return false;
}

Deno.test({
  name: "autolock: a restarted manager stays locked until unlocked with the swarm's key",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-autolock-" });
  const [api] = freePorts(1);
  const host = ["--host", `tcp://127.0.0.1:${api}`];
  let node: NodeProcess | undefined;
  const stop = async () => {
    node!.kill("SIGTERM");
    await node!.done;
    node = undefined;
  };
  const startLocked = async () => {
    node = new NodeProcess("m", ["start", "--data-dir", dir]);
    await node.waitFor(/Swarm is locked/);
  };
  try {
    let key = "";
    await t.step("init --autolock shows the unlock key once", async () => {
      node = new NodeProcess("m", [
        "swarm",
        "init",
        "--autolock",
        "--data-dir",
        dir,
        "--listen-addr",
        "127.0.0.1:0",
        "--api-addr",
        `127.0.0.1:${api}`,
        "--sync",
        "off",
      ]);
      [, key] = await node.waitFor(
        /To unlock a swarm manager after it restarts, run the `shoal swarm unlock`\ncommand and provide the following key:\n\n {4}(SWMKEY-1-\S+)\n/,
      );
      await node.waitFor(/Press Ctrl-C to stop/);
      const q = await shoal([...host, "swarm", "unlock-key", "-q"]);
      assert.equal(q.stdout.trim(), key);
      await stop();
      assert.equal(await anyFileHas(dir, key), false, "the unlock key is not stored");
      const keys = JSON.parse(await Deno.readTextFile(`${dir}/keys.json`));
      assert.equal(keys.autolock, true);
      assert.equal(keys.kek, undefined);
      // The node's TLS key is sealed too, as Docker's autolock protects it.
      const tlsKey = await Deno.readTextFile(`${dir}/certificates/swarm-node.key`);
      assert.match(tlsKey, /^-----BEGIN SHOAL SEALED PRIVATE KEY-----\n/);
      assert.equal(await anyFileHas(dir, "-----BEGIN PRIVATE KEY-----"), false);
    });

    await t.step("restarted, it is locked: only unlock works, and only with the key", async () => {
      await startLocked();
      const ls = await shoal([...host, "service", "ls"]);
      assert.equal(ls.code, 1);
      assert.match(ls.stderr, /Swarm is encrypted and needs to be unlocked before it can be used/);
      const info = await shoal([...host, "info"]);
      assert.match(info.stdout, /Swarm: locked/);
      const wrong = await shoalWithInput(
        [...host, "swarm", "unlock"],
        "SWMKEY-1-" + "A".repeat(52) + "\n",
      );
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /could not be unlocked/);
      const right = await shoalWithInput([...host, "swarm", "unlock"], key + "\n");
      assert.equal(right.code, 0, right.stderr);
      await node!.waitFor(/Press Ctrl-C to stop/);
      const ok = await until("the API answers", async () => {
        const r = await shoal([...host, "service", "ls"]);
        return r.code === 0 && r;
      });
      assert.ok(ok);
    });

    await t.step("rotating the key: the old one stops working", async () => {
      const before = await Deno.readTextFile(`${dir}/keys.json`);
      const r = await shoal([...host, "swarm", "unlock-key", "--rotate"]);
      assert.equal(r.code, 0, r.stderr);
      const [, fresh] = r.stdout.match(
        /^Successfully rotated manager unlock key\.\n\nTo unlock .*\n.*\n\n {4}(SWMKEY-1-\S+)\n/,
      )!;
      assert.notEqual(fresh, key);
      // The manager rewraps its data key as it applies the new key.
      await until(
        "keys.json rewrapped",
        async () => await Deno.readTextFile(`${dir}/keys.json`) !== before,
      );
      await stop();
      await startLocked();
      const old = await shoalWithInput([...host, "swarm", "unlock"], key + "\n");
      assert.equal(old.code, 1);
      assert.match(old.stderr, /invalid key/);
      const right = await shoalWithInput([...host, "swarm", "unlock"], fresh + "\n");
      assert.equal(right.code, 0, right.stderr);
      await node!.waitFor(/Press Ctrl-C to stop/);
      // Unlocked with the new key, it opened its sealed TLS key: the API over the cluster's TLS
      // is up (the manager's dispatcher presents that key's certificate).
      const ok = await until("the API answers", async () => {
        const r = await shoal([...host, "node", "ls"]);
        return r.code === 0 && r;
      });
      assert.match(ok.stdout, /Leader/);
    });

    await t.step("autolock off: the manager starts unlocked", async () => {
      const r = await until("swarm update", async () => {
        const u = await shoal([...host, "swarm", "update", "--autolock=false"]);
        return u.code === 0 && u;
      });
      assert.ok(r);
      const none = await shoal([...host, "swarm", "unlock-key"]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no unlock key is set/);
      await until("keys.json no longer autolocked", async () => {
        const k = JSON.parse(await Deno.readTextFile(`${dir}/keys.json`));
        return k.autolock === false;
      });
      // The TLS key is a plain PEM key again.
      await until("the TLS key unsealed", async () => {
        const k = await Deno.readTextFile(`${dir}/certificates/swarm-node.key`);
        return k.startsWith("-----BEGIN PRIVATE KEY-----");
      });
      await stop();
      node = new NodeProcess("m", ["start", "--data-dir", dir]);
      await node.waitFor(/Press Ctrl-C to stop/);
    });
  } finally {
    if (node) await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
