/**
 * `shoal log` (dump-wal, dump-snapshot, dump-object, verify, decrypt) with the real `./shoal`
 * command: offline on real data dirs of both formats (a single manager's `log.db`, a Raft
 * member's `raft.db`), plain and encrypted at rest (key stored beside the data, and autolock),
 * and through the API of a running node with `-H`.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  buildDataDir,
  type BuiltDataDir,
  SECRET_NAME,
  SECRET_TEXT,
} from "../_harness/log_data_dir.ts";
import { SqliteLog } from "../../events/sqlite_log.ts";
import { restore, restoreData, snapshot, snapshotData } from "../../actors/snapshot.ts";
import { startNode } from "../../node/daemon.ts";

const root = new URL("../../", import.meta.url).pathname;

async function shoal(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(`${root}shoal`, {
    args,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** Whether `text` occurs in any file of `dir` (databases, their WAL files, keys.json...). */
async function inFiles(dir: string, text: string): Promise<string[]> {
  const want = new TextEncoder().encode(text);
  const hits: string[] = [];
  for await (const f of Deno.readDir(dir)) {
    if (!f.isFile) continue;
    const bytes = await Deno.readFile(`${dir}/${f.name}`);
    outer: for (let i = 0; i + want.length <= bytes.length; i++) {
      for (let k = 0; k < want.length; k++) if (bytes[i + k] !== want[k]) continue outer;
      hits.push(f.name);
      break;
    }
  }
  return hits;
}

const dirs: string[] = [];
async function built(options: Parameters<typeof buildDataDir>[0]): Promise<BuiltDataDir> {
  const b = await buildDataDir(options);
  dirs.push(b.dataDir);
  return b;
}

function replicas(out: string): number {
  const [svc] = JSON.parse(out);
  return svc.spec.mode.replicas;
}

Deno.test({
  name: "shoal log on a single manager's log.db: dump, objects at an index, snapshot checks",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const b = await built({ format: "log" });
    const dd = ["--data-dir", b.dataDir];
    try {
      const wal = await shoal(["log", "dump-wal", ...dd]);
      assert.equal(wal.code, 0, wal.err);
      assert.match(
        wal.out,
        /^index=1 term=1 time=\S+ by=user:secret\.create\n {2}SecretCreated id=/,
      );
      assert.ok(!wal.out.includes(btoa(SECRET_TEXT)), "dump-wal shows no secret data");

      const snaps = await shoal(["log", "dump-snapshot", ...dd]);
      assert.equal(snaps.code, 0, snaps.err);
      assert.match(
        snaps.out,
        new RegExp(
          `^snapshot at index ${b.snapshots[0]}, term 1, \\d+ bytes\n  state: .*1 service`,
        ),
      );
      const json = await shoal(["log", "dump-snapshot", ...dd, "--format", "json"]);
      assert.deepEqual(JSON.parse(json.out).map((s: { index: number }) => s.index), b.snapshots);

      const then = await shoal([
        "log",
        "dump-object",
        ...dd,
        "--at",
        String(b.beforeScale),
        "services",
        "web",
      ]);
      assert.equal(then.code, 0, then.err);
      assert.equal(replicas(then.out), 1);
      const now = await shoal(["log", "dump-object", ...dd, "service", "web"]);
      assert.equal(replicas(now.out), 3);
      const secrets = await shoal(["log", "dump-object", ...dd, "secrets"]);
      assert.equal(JSON.parse(secrets.out)[0].spec.data, "[REDACTED]");
      const none = await shoal(["log", "dump-object", ...dd, "configs"]);
      assert.equal(none.code, 1);
      assert.match(none.err, /no matching objects found/);
      const badKind = await shoal(["log", "dump-object", ...dd, "volumes"]);
      assert.match(badKind.err, /unknown kind "volumes"/);

      const ok = await shoal(["log", "verify", ...dd]);
      assert.equal(ok.code, 0, ok.err);
      assert.match(
        ok.out,
        new RegExp(`^log ok: ${b.lastIndex} entries \\(1 to ${b.lastIndex}\\), 2 of 2 snapshots`),
      );
      assert.match(ok.out, new RegExp(`snapshot at index ${b.snapshots[1]}: ok`));

      // A snapshot that does not match the log: web with 5 replicas at the last index.
      const log = new SqliteLog({ path: `${b.dataDir}/log.db`, keepSnapshots: 3 });
      const data = structuredClone(snapshotData(restore(log.snapshots()[1].bytes)));
      const web = data.services.findIndex((s) => s.spec.name === "web");
      data.services[web] = {
        ...data.services[web],
        spec: { ...data.services[web].spec, mode: { kind: "replicated", replicas: 5 } },
      };
      log.saveSnapshot(b.snapshots[1], snapshot(restoreData(data)));
      await log.close();
      const lying = await shoal(["log", "verify", ...dd]);
      assert.equal(lying.code, 1);
      assert.match(
        lying.err,
        new RegExp(
          `^log corrupt: snapshot at index ${
            b.snapshots[1]
          } differs from the fold of the log up to ${
            b.snapshots[1]
          }: service web \\(\\w+\\): spec\\.mode\\.replicas: 3 → 5`,
        ),
      );

      // A flipped bit in an entry: its index and the checksum.
      const db = new DatabaseSync(`${b.dataDir}/log.db`);
      const row = db.prepare("SELECT record FROM entries WHERE idx = 4").get() as {
        record: Uint8Array;
      };
      const flipped = row.record.slice();
      flipped[3] ^= 0xff;
      db.prepare("UPDATE entries SET record = ? WHERE idx = 4").run(flipped);
      db.close();
      const corrupt = await shoal(["log", "verify", ...dd]);
      assert.equal(corrupt.code, 1);
      assert.match(corrupt.err, /^log corrupt: index 4: checksum mismatch/);
    } finally {
      await Deno.remove(b.dataDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "shoal log on an autolocked raft.db: the unlock key, nothing in the clear, decrypt",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const b = await built({ format: "raft", encrypt: "autolock" });
    const out = await Deno.makeTempDir({ prefix: "shoal-decrypted-" });
    dirs.push(out);
    const dd = ["--data-dir", b.dataDir];
    const key = ["--unlock-key", b.unlockKey!];
    try {
      // Nothing of the events or the secret is on disk in the clear.
      for (
        const text of [SECRET_NAME, btoa(SECRET_TEXT), SECRET_TEXT, "SecretCreated", "/bin/sleep"]
      ) {
        assert.deepEqual(await inFiles(b.dataDir, text), [], `${text} is on disk`);
      }

      const locked = await shoal(["log", "dump-wal", ...dd]);
      assert.equal(locked.code, 1);
      assert.match(
        locked.err,
        /the swarm could not be unlocked: it is autolocked and no unlock key/,
      );
      const wrong = await shoal([
        "log",
        "verify",
        ...dd,
        "--unlock-key",
        "SWMKEY-1-" + "A".repeat(43),
      ]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.err, /the swarm could not be unlocked: invalid key/);

      const wal = await shoal(["log", "dump-wal", ...dd, ...key, "--end", "2"]);
      assert.equal(wal.code, 0, wal.err);
      assert.match(
        wal.out,
        /^raft=1 term=1 conf change addNode node=1\nraft=2 term=\d+ empty entry\nindex=1 term=\d+ time=\S+ by=user:secret\.create raft=3\n/,
      );
      const lines = await shoal(["log", "dump-wal", ...dd, ...key, "--format", "json"]);
      const records = lines.out.trim().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(
        records.filter((r) => r.index !== undefined).map((r) => r.index),
        Array.from({ length: b.lastIndex }, (_, i) => i + 1),
      );

      const snaps = await shoal(["log", "dump-snapshot", ...dd, ...key]);
      assert.equal(snaps.code, 0, snaps.err);
      assert.match(
        snaps.out,
        /^snapshot at index \d+ \(raft index \d+\), term \d+, \d+ bytes\n {2}members: 1=127\.0\.0\.1:\d+\n {2}state: /,
      );

      const then = await shoal([
        "log",
        "dump-object",
        ...dd,
        ...key,
        "--at",
        String(b.beforeScale),
        "services",
        "web",
      ]);
      assert.equal(then.code, 0, then.err);
      assert.equal(replicas(then.out), 1);

      const ok = await shoal(["log", "verify", ...dd, ...key]);
      assert.equal(ok.code, 0, ok.err);
      assert.match(ok.out, /^log ok: \d+ entries \(1 to \d+\), 1 of 1 snapshots/);

      const dec = await shoal(["log", "decrypt", ...dd, ...key, "--out", out]);
      assert.equal(dec.code, 0, dec.err);
      assert.match(
        dec.out,
        new RegExp(`^decrypted .*raft\\.db \\(\\d+ entries\\) to ${out}/raft\\.db`),
      );
      assert.ok((await inFiles(out, SECRET_NAME)).includes("raft.db"), "the copy is plaintext");
      const plainVerify = await shoal(["log", "verify", "--data-dir", out]);
      assert.equal(plainVerify.code, 0, plainVerify.err);
      assert.equal(plainVerify.out, ok.out);
      const plainDump = await shoal(["log", "dump-wal", "--data-dir", out]);
      const keyedDump = await shoal(["log", "dump-wal", ...dd, ...key]);
      assert.equal(plainDump.out, keyedDump.out);
      const again = await shoal(["log", "decrypt", ...dd, ...key, "--out", out]);
      assert.equal(again.code, 1);
      assert.match(again.err, /already exists/);
      const notEncrypted = await shoal(["log", "decrypt", "--data-dir", out, "--out", `${out}/x`]);
      assert.match(notEncrypted.err, /is not encrypted/);
    } finally {
      await Deno.remove(b.dataDir, { recursive: true }).catch(() => {});
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "shoal log on a compacted, encrypted raft.db with the stored key; a bad row is named",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const b = await built({ format: "raft", encrypt: "stored", compact: true });
    const dd = ["--data-dir", b.dataDir];
    try {
      const ok = await shoal(["log", "verify", ...dd]);
      assert.equal(ok.code, 0, ok.err);
      assert.match(ok.out, /not checked: entries 1 to \d+ were compacted away/);
      const early = await shoal(["log", "dump-object", ...dd, "--at", "1", "secrets"]);
      assert.equal(early.code, 1);
      assert.match(early.err, /compacted away/);
      const now = await shoal(["log", "dump-object", ...dd, "services", "web"]);
      assert.equal(replicas(now.out), 3);

      const db = new DatabaseSync(`${b.dataDir}/raft.db`);
      const row = db.prepare(
        "SELECT idx, data FROM raft_entries ORDER BY idx DESC LIMIT 1 OFFSET 1",
      )
        .get() as { idx: number; data: Uint8Array };
      const flipped = row.data.slice();
      flipped[flipped.length - 1] ^= 1;
      db.prepare("UPDATE raft_entries SET data = ? WHERE idx = ?").run(flipped, row.idx);
      db.close();
      const corrupt = await shoal(["log", "verify", ...dd]);
      assert.equal(corrupt.code, 1);
      assert.match(
        corrupt.err,
        new RegExp(
          `^log corrupt: index ${b.lastIndex - 1} \\(raft index ${row.idx}\\): checksum mismatch`,
        ),
      );
    } finally {
      await Deno.remove(b.dataDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "shoal log -H works on a running node through the API",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-log-live-" });
    const node = await startNode({
      dataDir,
      listenAddr: "127.0.0.1:0",
      synchronous: "off",
      docker: false,
    });
    try {
      await node.manager.execute({
        kind: "CreateFileObject",
        object: "secret",
        spec: { name: SECRET_NAME, labels: {}, data: btoa(SECRET_TEXT) },
      }, { by: "user:secret.create" });
      const host = ["-H", node.apiUrl];
      const secrets = await shoal([...host, "log", "dump-object", "secrets", SECRET_NAME]);
      assert.equal(secrets.code, 0, secrets.err);
      assert.equal(JSON.parse(secrets.out)[0].spec.data, "[REDACTED]");
      const cluster = await shoal([...host, "log", "dump-object", "cluster"]);
      assert.equal(JSON.parse(cluster.out)[0].rootCA.keyPem, "[REDACTED]");
      const verify = await shoal([...host, "log", "verify"]);
      assert.equal(verify.code, 0, verify.err);
      assert.match(verify.out, /^log ok: \d+ entries/);
      const wal = await shoal([...host, "log", "dump-wal", "--start", "1", "--end", "1"]);
      assert.equal(wal.code, 0, wal.err);
      assert.match(wal.out, /^index=1 term=\d+ time=\S+ by=user:swarm\.init\n/);
      const snaps = await shoal([...host, "log", "dump-snapshot"]);
      assert.equal(snaps.code, 0, snaps.err);
    } finally {
      await node.close();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
