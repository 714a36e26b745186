/**
 * {@linkcode SqliteLog} encrypted at rest: the EventLog contract holds, no event, secret or
 * snapshot is plaintext in the database or its WAL, a wrong key is named, and
 * {@linkcode copyLog} makes a decrypted copy.
 */
import assert from "node:assert/strict";
import { AtRestCipher } from "./at_rest_cipher.ts";
import { sampleBatch, testEventLog } from "./_log_contract.ts";
import { copyLog, SqliteLog } from "./sqlite_log.ts";
import { CorruptRecordError } from "./codec.ts";
import type { Batch } from "./schema.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-sqlite-log-enc-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshPath = () => `${dir}/log-${++n}.db`;
const key = () => new AtRestCipher(crypto.getRandomValues(new Uint8Array(32)));
const utf8 = new TextEncoder();

testEventLog("SqliteLog (encrypted)", () => new SqliteLog({ path: freshPath(), cipher: key() }));

const SECRET = "hunter2-top-secret-value";
const NAME = "db-password-marker";

function secretBatch(): Batch {
  return {
    at: 1_700_000_000_000,
    by: "user:secret.create",
    events: [{
      type: "SecretCreated",
      v: 1,
      data: { id: "s".repeat(25), spec: { name: NAME, labels: {}, data: btoa(SECRET) } },
      meta: { by: "user:secret.create", reason: "secret create" },
    }],
  } as Batch;
}

/** Whether `needle` occurs in the db file, its WAL or its shared memory file. */
function onDisk(path: string, needle: string): boolean {
  const want = utf8.encode(needle);
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(file);
    } catch {
      continue;
    }
    outer: for (let i = 0; i + want.length <= bytes.length; i++) {
      for (let k = 0; k < want.length; k++) if (bytes[i + k] !== want[k]) continue outer;
      return true;
    }
  }
  return false;
}

const needles = [NAME, btoa(SECRET), "TaskDesiredStateChanged", "desiredState", "orchestrator"];

async function fill(path: string, cipher?: AtRestCipher): Promise<SqliteLog> {
  const log = new SqliteLog({ path, cipher });
  await log.append(secretBatch());
  for (let i = 0; i < 10; i++) await log.append(sampleBatch(i, 3));
  log.saveSnapshot(5, utf8.encode(`${NAME} in a snapshot`));
  return log;
}

Deno.test("SqliteLog without a cipher leaves events in the clear (the scan can fail)", async () => {
  const path = freshPath();
  const log = await fill(path);
  for (const needle of needles) assert.ok(onDisk(path, needle), needle);
  await log.close();
});

Deno.test("SqliteLog with a cipher: no event, secret or snapshot is plaintext on disk", async () => {
  const path = freshPath();
  const cipher = key();
  const log = await fill(path, cipher);
  for (const needle of needles) assert.equal(onDisk(path, needle), false, `${needle} while open`);
  await log.close();
  for (const needle of needles) assert.equal(onDisk(path, needle), false, `${needle} after close`);

  const again = new SqliteLog({ path, cipher });
  assert.equal(again.lastIndex(), 11);
  assert.deepEqual(again.read(1, 1)[0].batch, secretBatch());
  assert.deepEqual(again.read(2)[9].batch, sampleBatch(9, 3));
  assert.deepEqual(again.snapshots().map((s) => s.index), [5]);
  assert.equal(new TextDecoder().decode(again.snapshots()[0].bytes), `${NAME} in a snapshot`);
  await again.close();
});

Deno.test("SqliteLog names a wrong key with the index it could not read", async () => {
  const path = freshPath();
  await (await fill(path, key())).close();
  assert.throws(() => new SqliteLog({ path, cipher: key() }).read(1), (err) => {
    assert.ok(err instanceof CorruptRecordError);
    assert.match(err.message, /index 1: cannot decrypt: it was encrypted with another data key/);
    return true;
  });
});

Deno.test("SqliteLog keeps the newest snapshots only, and refuses one past the log", async () => {
  const log = new SqliteLog({ path: freshPath(), cipher: key(), keepSnapshots: 2 });
  for (let i = 0; i < 4; i++) await log.append(sampleBatch(i));
  for (const i of [1, 2, 3]) log.saveSnapshot(i, new Uint8Array([i]));
  assert.deepEqual(log.snapshots().map((s) => [s.index, s.bytes[0]]), [[2, 2], [3, 3]]);
  assert.throws(() => log.saveSnapshot(9, new Uint8Array()), /the last index is 4/);
  await log.close();
});

Deno.test("copyLog makes a decrypted copy with the same bytes, and an encrypted one back", async () => {
  const path = freshPath();
  const cipher = key();
  await (await fill(path, cipher)).close();
  const plain = freshPath();
  assert.deepEqual(copyLog(path, plain, { from: cipher }), { entries: 11 });
  assert.ok(onDisk(plain, NAME));
  const a = new SqliteLog({ path, cipher });
  const p = new SqliteLog({ path: plain });
  assert.deepEqual(p.read(1).map((e) => e.bytes), a.read(1).map((e) => e.bytes));
  assert.deepEqual(p.snapshots(), a.snapshots());
  await a.close();
  await p.close();

  const back = freshPath();
  copyLog(plain, back, { to: cipher });
  for (const needle of needles) assert.equal(onDisk(back, needle), false, needle);
  const b = new SqliteLog({ path: back, cipher });
  assert.deepEqual(b.read(1, 1)[0].batch, secretBatch());
  await b.close();
  assert.throws(() => copyLog(path, freshPath(), { from: key() }), /another data key/);
});
