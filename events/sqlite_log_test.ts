import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { sampleBatch, testEventLog } from "./_log_contract.ts";
import { SqliteLog } from "./sqlite_log.ts";
import { CorruptRecordError } from "./codec.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-sqlite-log-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshPath = () => `${dir}/log-${++n}.db`;

testEventLog("SqliteLog", () => new SqliteLog({ path: freshPath() }));

Deno.test("SqliteLog keeps every acknowledged entry across a reopen, decoding with stored structures", async () => {
  const path = freshPath();
  const a = new SqliteLog({ path });
  const indexes = await Promise.all(
    Array.from({ length: 50 }, (_, i) => a.append(sampleBatch(i, 1 + (i % 4)))),
  );
  assert.deepEqual(indexes, Array.from({ length: 50 }, (_, i) => i + 1));
  await a.close();
  const b = new SqliteLog({ path });
  assert.equal(b.lastIndex(), 50);
  const entries = b.read(1);
  assert.equal(entries.length, 50);
  entries.forEach((e, i) => assert.deepEqual(e.batch, sampleBatch(i, 1 + (i % 4))));
  assert.equal(await b.append(sampleBatch(99)), 51);
  await b.close();
});

Deno.test("SqliteLog reports a corrupt row with its index instead of loading it", async () => {
  const path = freshPath();
  const log = new SqliteLog({ path });
  for (let i = 0; i < 5; i++) await log.append(sampleBatch(i));
  await log.close();
  const db = new DatabaseSync(path);
  const row = db.prepare("SELECT record FROM entries WHERE idx = 3").get() as {
    record: Uint8Array;
  };
  const bad = row.record.slice();
  bad[5] ^= 0xff;
  db.prepare("UPDATE entries SET record = ? WHERE idx = 3").run(bad);
  db.close();
  const reopened = new SqliteLog({ path });
  assert.equal(reopened.read(1, 2).length, 2);
  assert.throws(() => reopened.read(1), (err) => {
    assert.ok(err instanceof CorruptRecordError);
    assert.equal(err.index, 3);
    assert.match(err.message, /Corrupt record at index 3: checksum mismatch/);
    return true;
  });
  await reopened.close();
});

Deno.test("SqliteLog commits appends of one turn together, in order", async () => {
  const log = new SqliteLog({ path: freshPath(), synchronous: "normal" });
  const first = await Promise.all([1, 2, 3].map((i) => log.append(sampleBatch(i))));
  const second = await Promise.all([4, 5].map((i) => log.append(sampleBatch(i))));
  assert.deepEqual([...first, ...second], [1, 2, 3, 4, 5]);
  assert.deepEqual(
    log.read(1).map((e) => e.batch.at),
    [1, 2, 3, 4, 5].map((i) => sampleBatch(i).at),
  );
  await log.close();
});
