/**
 * Encryption at rest on a real manager: the Raft log of a new data dir is sealed with the data key
 * of `keys.json`, so neither a secret's bytes nor any event's text appears in the database files
 * (the WAL included), while the node reads it all back after a restart.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { SecretSpec, ServiceSpec } from "../../events/schema.ts";

const SECRET = "correct-horse-battery-staple-7d1e";
const NAME = "payroll-service-9f3a";

/** Whether any of the data dir's database files holds `needle`. */
async function found(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  const bytes = new TextEncoder().encode(needle);
  for await (const e of Deno.readDir(dir)) {
    if (!/^raft\.db/.test(e.name)) continue;
    const data = await Deno.readFile(`${dir}/${e.name}`);
    outer: for (let i = 0; i + bytes.length <= data.length; i++) {
      for (let j = 0; j < bytes.length; j++) if (data[i + j] !== bytes[j]) continue outer;
      hits.push(e.name);
      break;
    }
  }
  return hits;
}

Deno.test("a manager's log is encrypted at rest and reads back after a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-at-rest-" });
  const options = {
    dataDir: dir,
    listenAddr: "127.0.0.1:0",
    docker: false,
    synchronous: "off" as const,
  };
  try {
    let node = await startNode(options);
    await node.manager.execute({
      kind: "CreateFileObject",
      object: "secret",
      spec: SecretSpec.parse({ name: "db-password", data: btoa(SECRET) }),
    }, { by: "test" });
    await node.manager.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name: NAME,
        mode: { kind: "replicated", replicas: 0 },
        task: { runtime: { kind: "process", command: "/bin/true" } },
      }),
    }, { by: "test" });
    const keys = JSON.parse(await Deno.readTextFile(`${dir}/keys.json`));
    assert.equal(keys.autolock, false);
    assert.equal((await Deno.stat(`${dir}/keys.json`)).mode! & 0o777, 0o600);
    // While it runs (the WAL holds the latest pages) and after it stopped.
    assert.deepEqual(await found(dir, SECRET), [], "no plaintext of the secret");
    assert.deepEqual(await found(dir, btoa(SECRET)), [], "nor its base64, as the log holds it");
    assert.deepEqual(await found(dir, NAME), [], "no plaintext of an event");
    await node.close();
    assert.deepEqual(await found(dir, SECRET), []);
    assert.deepEqual(await found(dir, NAME), []);

    node = await startNode({ ...options, mode: "resume" });
    try {
      const names = [...node.manager.state.services.values()].map((s) => s.spec.name);
      assert.deepEqual(names, [NAME]);
      assert.equal(node.manager.state.secretNames.has("db-password"), true);
    } finally {
      await node.close();
    }
    // The check can fail: the same scan finds what is there in the clear.
    assert.deepEqual(await found(dir, "SQLite format 3"), ["raft.db"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
