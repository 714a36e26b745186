/**
 * {@linkcode openStoredLog} on real data dirs of both formats, plain and encrypted: the same
 * events under the same indexes, the Raft log's conf changes and empty entries, its snapshot
 * and the numbering across compaction, and clear errors for a missing log or a wrong key.
 */
import assert from "node:assert/strict";
import { buildDataDir } from "../tests/_harness/log_data_dir.ts";
import { findLogFile, openStoredLog, type WalRecord } from "./stored_log.ts";
import { AtRestCipher } from "./at_rest_cipher.ts";

const dirs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const d of dirs) Deno.removeSync(d, { recursive: true });
});

async function built(options: Parameters<typeof buildDataDir>[0]) {
  const b = await buildDataDir(options);
  dirs.push(b.dataDir);
  return b;
}

const types = (records: Iterable<WalRecord>) =>
  [...records].map((r) => r.type === "events" ? `${r.entry.index}` : r.type);

Deno.test("a log.db and a raft.db built by the same commands read as the same log", async () => {
  const log = await built({ format: "log" });
  const raft = await built({ format: "raft", encrypt: "stored" });
  assert.equal(findLogFile(log.dataDir).format, "log");
  assert.equal(findLogFile(raft.dataDir).format, "raft");
  const a = openStoredLog(log.dataDir);
  const b = openStoredLog(raft.dataDir, { cipher: raft.cipher });
  try {
    assert.equal(a.lastIndex(), log.lastIndex);
    assert.equal(b.lastIndex(), raft.lastIndex);
    assert.equal(b.firstIndex(), 1);
    const ea = a.read(1), eb = b.read(1);
    assert.deepEqual(eb.map((e) => e.index), ea.map((e) => e.index));
    assert.deepEqual(
      eb.map((e) => e.batch.events.map((ev) => ev.type)),
      ea.map((e) => e.batch.events.map((ev) => ev.type)),
    );
    assert.equal(ea[0].batch.events[0].type, "SecretCreated");
    assert.deepEqual(b.read(3, 4).map((e) => e.index), [3, 4]);

    // The Raft log shows its bootstrap conf change and the leader's empty entry.
    const rec = types(b.records(1, 2));
    assert.deepEqual(rec, ["confChange", "empty", "1", "2"]);
    const cc = [...b.records(1, 1)][0];
    assert.ok(cc.type === "confChange" && cc.change.type === "addNode" && cc.change.nodeId === 1);
    assert.deepEqual(types(a.records(14, 99)), ["14", "15"]);

    assert.deepEqual(a.snapshots().map((s) => [s.index, s.term]), log.snapshots.map((i) => [i, 1]));
    const [snap] = b.snapshots();
    assert.ok(snap.raftIndex! > snap.index, "raft indexes run ahead of log indexes");
    assert.equal(snap.members?.[0].id, 1);
    assert.match(snap.members?.[0].address ?? "", /^127\.0\.0\.1:\d+$/);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("a compacted raft.db numbers its entries from the snapshot on", async () => {
  const raft = await built({ format: "raft", compact: true });
  const log = openStoredLog(raft.dataDir);
  try {
    assert.ok(log.firstIndex() > 1, `compacted: first index ${log.firstIndex()}`);
    assert.equal(log.lastIndex(), raft.lastIndex);
    const entries = log.read(1);
    assert.equal(entries[0].index, log.firstIndex());
    assert.equal(entries.at(-1)!.index, raft.lastIndex);
    const [snap] = log.snapshots();
    assert.ok(snap.index >= log.firstIndex() - 1 && snap.index <= raft.lastIndex);
    assert.deepEqual(
      types(log.records(log.firstIndex(), Infinity)).filter((t) => /^\d+$/.test(t)).map(Number),
      entries.map((e) => e.index),
    );
  } finally {
    log.close();
  }
});

Deno.test("openStoredLog names a missing log and a wrong key", async () => {
  const empty = await Deno.makeTempDir();
  dirs.push(empty);
  assert.throws(() => openStoredLog(empty), /no log in .* \(neither raft\.db nor log\.db\)/);
  const raft = await built({ format: "raft", encrypt: "autolock" });
  assert.throws(
    () => openStoredLog(raft.dataDir, { cipher: new AtRestCipher(new Uint8Array(32)) }),
    /another data key/,
  );
  const log = await built({ format: "log", encrypt: "stored" });
  const wrong = openStoredLog(log.dataDir, { cipher: new AtRestCipher(new Uint8Array(32)) });
  assert.throws(() => wrong.read(1), /index 1: cannot decrypt/);
  wrong.close();
  // Without the key, nothing of the encrypted log is taken for events.
  const blind = openStoredLog(log.dataDir);
  assert.throws(() => blind.read(1));
  blind.close();
});
