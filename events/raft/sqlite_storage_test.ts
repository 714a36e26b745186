/**
 * Storage behaviour tests, run against both {@linkcode MemoryStorage} and
 * {@linkcode SqliteStorage} where their behaviour overlaps, then SQLite's own: durability across
 * a reopen, checksums, one transaction per Ready, applied state, the entry cache.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { CorruptRecordError } from "../codec.ts";
import { CompactedError, SnapOutOfDateError, UnavailableError } from "./errors.ts";
import { type AppliedState, SqliteStorage, type SqliteStorageOptions } from "./sqlite_storage.ts";
import { MemoryStorage, type Storage } from "./storage.ts";
import { AtRestCipher } from "../at_rest_cipher.ts";
import type { ConfState, Entry, HardState, Snapshot } from "./types.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-raft-storage-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshPath = () => `${dir}/raft-${++n}.db`;

const ent = (term: number, index: number, size = 0, fill = index): Entry => ({
  term,
  index,
  type: "normal",
  data: new Uint8Array(size).fill(fill & 0xff),
});

/** The write side both storages offer, as the tests drive it. */
interface Subject {
  storage: Storage;
  append(entries: Entry[]): void;
  setHardState(hs: HardState): void;
  applySnapshot(snap: Snapshot): void;
  createSnapshot(i: number, cs: ConfState | undefined, data: Uint8Array): Snapshot;
  compact(i: number): void;
  close(): void;
}

function memorySubject(confState?: ConfState): Subject {
  const s = new MemoryStorage(confState ? { confState } : {});
  return {
    storage: s,
    append: (e) => s.append(e),
    setHardState: (hs) => s.setHardState(hs),
    applySnapshot: (snap) => s.applySnapshot(snap),
    createSnapshot: (i, cs, data) => s.createSnapshot(i, cs, data),
    compact: (i) => s.compact(i),
    close: () => {},
  };
}

function sqliteSubject(confState?: ConfState, extra: Partial<SqliteStorageOptions> = {}): Subject {
  const s = new SqliteStorage({ path: freshPath(), ...(confState ? { confState } : {}), ...extra });
  return sqliteWrap(s);
}

function sqliteWrap(s: SqliteStorage): Subject {
  return {
    storage: s,
    append: (entries) => s.saveReady({ entries }),
    setHardState: (hardState) => s.saveReady({ hardState, entries: [] }),
    applySnapshot: (snapshot) => s.saveReady({ snapshot, entries: [] }),
    createSnapshot: (i, cs, data) => s.createSnapshot(i, cs, data),
    compact: (i) => s.compact(i),
    close: () => s.close(),
  };
}

const subjects: [string, (cs?: ConfState) => Subject][] = [
  ["MemoryStorage", memorySubject],
  ["SqliteStorage", sqliteSubject],
  // A one-byte cache: every read goes to the file.
  ["SqliteStorage (no cache)", (cs) => sqliteSubject(cs, { cacheBytes: 1 })],
  // Encrypted at rest, every read from the file: decryption is on every path.
  [
    "SqliteStorage (encrypted, no cache)",
    (cs) => sqliteSubject(cs, { cacheBytes: 1, cipher: new AtRestCipher(new Uint8Array(32)) }),
  ],
];

/** Storage holding 3/3, 4/4, 5/5 after a snapshot at 3 (etcd's storage tests use this). */
function make345(make: (cs?: ConfState) => Subject): Subject {
  const s = make({ voters: [1, 2, 3], learners: [] });
  s.append([ent(1, 1), ent(2, 2), ent(3, 3), ent(4, 4), ent(5, 5)]);
  s.createSnapshot(3, undefined, new Uint8Array([3]));
  s.compact(3);
  return s;
}

for (const [name, make] of subjects) {
  const test = (title: string, body: () => void) => Deno.test(`${name}: ${title}`, body);

  test("starts empty with the bootstrapped configuration", () => {
    const s = make({ voters: [1], learners: [2] });
    try {
      assert.equal(s.storage.firstIndex(), 1);
      assert.equal(s.storage.lastIndex(), 0);
      assert.equal(s.storage.term(0), 0);
      assert.deepEqual(s.storage.initialState(), {
        hardState: { term: 0, vote: 0, commit: 0 },
        confState: { voters: [1], learners: [2] },
      });
      assert.throws(() => s.storage.entries(1, 1, Infinity), UnavailableError);
    } finally {
      s.close();
    }
  });

  test("term of the snapshot's entry and after; errors outside", () => {
    const s = make345(make);
    try {
      assert.throws(() => s.storage.term(2), CompactedError);
      assert.equal(s.storage.term(3), 3);
      assert.equal(s.storage.term(4), 4);
      assert.equal(s.storage.term(5), 5);
      assert.throws(() => s.storage.term(6), UnavailableError);
      assert.equal(s.storage.firstIndex(), 4);
      assert.equal(s.storage.lastIndex(), 5);
    } finally {
      s.close();
    }
  });

  test("entries in [lo, hi), limited by size but at least one", () => {
    const s = make();
    const c = make345(make);
    try {
      s.append([ent(1, 1, 10), ent(1, 2, 10), ent(1, 3, 10)]);
      const idx = (es: Entry[]) => es.map((e) => e.index);
      assert.deepEqual(idx(s.storage.entries(1, 4, Infinity)), [1, 2, 3]);
      assert.deepEqual(idx(s.storage.entries(1, 4, 20)), [1, 2]);
      assert.deepEqual(idx(s.storage.entries(1, 4, 29)), [1, 2]);
      assert.deepEqual(idx(s.storage.entries(1, 4, 0)), [1]);
      assert.deepEqual(idx(s.storage.entries(2, 4, 10)), [2]);
      assert.deepEqual(s.storage.entries(2, 2, Infinity), []);
      assert.throws(() => s.storage.entries(1, 5, Infinity), RangeError);
      assert.deepEqual(s.storage.entries(2, 3, Infinity)[0].data, new Uint8Array(10).fill(2));
      assert.throws(() => c.storage.entries(3, 5, Infinity), CompactedError);
      assert.deepEqual(idx(c.storage.entries(4, 6, Infinity)), [4, 5]);
    } finally {
      s.close();
      c.close();
    }
  });

  test("append truncates a conflicting tail and skips compacted entries", () => {
    const s = make345(make);
    try {
      s.append([ent(3, 3), ent(6, 4), ent(6, 5), ent(6, 6)]);
      assert.deepEqual(s.storage.entries(4, 7, Infinity).map((e) => e.term), [6, 6, 6]);
      s.append([ent(7, 5)]);
      assert.equal(s.storage.lastIndex(), 5);
      assert.equal(s.storage.term(5), 7);
      assert.equal(s.storage.term(4), 6);
      s.append([ent(1, 1), ent(1, 2)]); // all compacted: nothing happens
      assert.equal(s.storage.lastIndex(), 5);
      assert.throws(() => s.append([ent(8, 7)]), RangeError, "a gap");
      s.append([ent(7, 6), ent(8, 7)]);
      assert.deepEqual(s.storage.entries(4, 8, Infinity).map((e) => e.term), [6, 7, 7, 8]);
    } finally {
      s.close();
    }
  });

  test("compact keeps the compacted entry's term readable", () => {
    const s = make345(make);
    try {
      assert.throws(() => s.compact(3), CompactedError);
      assert.throws(() => s.compact(6), RangeError);
      s.compact(4);
      assert.equal(s.storage.firstIndex(), 5);
      assert.equal(s.storage.term(4), 4);
      assert.equal(s.storage.term(5), 5);
      assert.deepEqual(s.storage.entries(5, 6, Infinity).map((e) => e.index), [5]);
      s.compact(5);
      assert.equal(s.storage.firstIndex(), 6);
      assert.equal(s.storage.lastIndex(), 5);
      assert.equal(s.storage.term(5), 5);
      s.append([ent(6, 6)]);
      assert.equal(s.storage.term(6), 6);
    } finally {
      s.close();
    }
  });

  test("snapshots must move forward; applying one replaces the log", () => {
    const s = make345(make);
    const other = make();
    try {
      const snap = s.storage.snapshot();
      assert.equal(snap.metadata.index, 3);
      assert.equal(snap.metadata.term, 3);
      assert.deepEqual(snap.metadata.confState, { voters: [1, 2, 3], learners: [] });
      assert.deepEqual(snap.data, new Uint8Array([3]));
      assert.throws(() => s.createSnapshot(3, undefined, new Uint8Array()), SnapOutOfDateError);
      assert.throws(() => s.createSnapshot(9, undefined, new Uint8Array()), RangeError);
      const newer = s.createSnapshot(5, { voters: [1, 2], learners: [] }, new Uint8Array([5]));
      assert.equal(newer.metadata.term, 5);

      other.append([ent(1, 1)]);
      other.applySnapshot(newer);
      assert.equal(other.storage.firstIndex(), 6);
      assert.equal(other.storage.lastIndex(), 5);
      assert.equal(other.storage.term(5), 5);
      assert.throws(() => other.storage.term(1), CompactedError);
      assert.deepEqual(other.storage.initialState().confState, { voters: [1, 2], learners: [] });
      assert.deepEqual(other.storage.snapshot(), newer);
      assert.throws(() => other.applySnapshot(snap), SnapOutOfDateError);
      other.append([ent(5, 6)]);
      assert.deepEqual(other.storage.entries(6, 7, Infinity).map((e) => e.index), [6]);
    } finally {
      s.close();
      other.close();
    }
  });

  test("hard state is kept", () => {
    const s = make();
    try {
      s.append([ent(1, 1), ent(2, 2)]);
      s.setHardState({ term: 2, vote: 3, commit: 2 });
      assert.deepEqual(s.storage.initialState().hardState, { term: 2, vote: 3, commit: 2 });
    } finally {
      s.close();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// SQLite only

function reopen(s: SqliteStorage, extra: Partial<SqliteStorageOptions> = {}): SqliteStorage {
  s.close();
  return new SqliteStorage({ path: s.path, ...extra });
}

Deno.test("SqliteStorage: everything persisted survives a reopen", () => {
  let s = new SqliteStorage({ path: freshPath(), confState: { voters: [1, 2, 3], learners: [] } });
  s.saveReady({
    hardState: { term: 2, vote: 1, commit: 3 },
    entries: [ent(1, 1, 5), ent(1, 2, 5), ent(2, 3, 5), ent(2, 4, 5)],
  });
  s.createSnapshot(2, undefined, new Uint8Array([9, 9]));
  s.compact(1);
  s.setApplied({ index: 3, confState: { voters: [1, 2], learners: [3] }, addresses: [[1, "a:1"]] });
  s = reopen(s, { confState: { voters: [7], learners: [] } });
  try {
    assert.deepEqual(s.initialState(), {
      hardState: { term: 2, vote: 1, commit: 3 },
      confState: { voters: [1, 2], learners: [3] },
    });
    assert.deepEqual(s.appliedState(), {
      index: 3,
      confState: { voters: [1, 2], learners: [3] },
      addresses: [[1, "a:1"]],
    });
    assert.equal(s.firstIndex(), 2);
    assert.equal(s.lastIndex(), 4);
    assert.equal(s.term(1), 1);
    assert.equal(s.term(3), 2);
    assert.deepEqual(s.entries(2, 5, Infinity), [ent(1, 2, 5), ent(2, 3, 5), ent(2, 4, 5)]);
    assert.deepEqual(s.snapshot(), {
      metadata: { index: 2, term: 1, confState: { voters: [1, 2, 3], learners: [] } },
      data: new Uint8Array([9, 9]),
    });
  } finally {
    s.close();
  }
});

Deno.test("SqliteStorage: a Ready is one transaction: all of it or nothing", () => {
  const s = new SqliteStorage({ path: freshPath() });
  try {
    s.saveReady({ hardState: { term: 1, vote: 1, commit: 0 }, entries: [ent(1, 1), ent(1, 2)] });
    // A second Ready whose entries hit a constraint (a made-up type) fails as a whole.
    const bad = { ...ent(2, 3), type: "bogus" } as unknown as Entry;
    assert.throws(() =>
      s.saveReady({ hardState: { term: 2, vote: 2, commit: 2 }, entries: [ent(2, 2), bad] })
    );
    assert.deepEqual(s.hardState(), { term: 1, vote: 1, commit: 0 });
    assert.equal(s.lastIndex(), 2);
    assert.equal(s.term(2), 1);
    const again = reopen(s);
    try {
      assert.deepEqual(again.hardState(), { term: 1, vote: 1, commit: 0 });
      assert.deepEqual(again.entries(1, 3, Infinity), [ent(1, 1), ent(1, 2)]);
    } finally {
      again.close();
    }
  } finally {
    s.close();
  }
});

Deno.test("SqliteStorage: a corrupt entry row is reported with its index", () => {
  const path = freshPath();
  const s = new SqliteStorage({ path, cacheBytes: 1 });
  s.saveReady({ entries: [ent(1, 1, 8), ent(1, 2, 8), ent(1, 3, 8), ent(3, 4, 8)] });
  s.close();
  const db = new DatabaseSync(path);
  db.prepare("UPDATE raft_entries SET data = ? WHERE idx = 2").run(new Uint8Array(8).fill(7));
  db.prepare("UPDATE raft_entries SET term = 2 WHERE idx = 3").run();
  db.close();
  const r = new SqliteStorage({ path, cacheBytes: 1 });
  try {
    assert.deepEqual(r.entries(1, 2, Infinity), [ent(1, 1, 8)]);
    assert.throws(() => r.entries(1, 5, Infinity), (err) => {
      assert.ok(err instanceof CorruptRecordError);
      assert.equal(err.index, 2);
      assert.match(err.message, /Corrupt record at index 2: checksum mismatch/);
      return true;
    });
    // A changed term fails the checksum too.
    assert.throws(() => r.entries(3, 4, Infinity), /Corrupt record at index 3/);
  } finally {
    r.close();
  }
});

Deno.test("SqliteStorage: corrupt state rows and missing entries are refused at open", () => {
  const path = freshPath();
  const s = new SqliteStorage({ path });
  s.saveReady({ hardState: { term: 1, vote: 0, commit: 1 }, entries: [ent(1, 1), ent(1, 2)] });
  s.saveReady({ entries: [ent(1, 3)] });
  s.close();
  const db = new DatabaseSync(path);
  db.prepare("DELETE FROM raft_entries WHERE idx = 2").run();
  db.close();
  assert.throws(() => new SqliteStorage({ path }), /Corrupt record at index 1: entries 1 to 3/);

  const path2 = freshPath();
  const t = new SqliteStorage({ path: path2 });
  t.saveReady({ hardState: { term: 1, vote: 0, commit: 0 }, entries: [] });
  t.close();
  const db2 = new DatabaseSync(path2);
  const row = db2.prepare("SELECT record FROM raft_state WHERE name = 'hard'").get() as {
    record: Uint8Array;
  };
  const bad = row.record.slice();
  bad[2] ^= 1;
  db2.prepare("UPDATE raft_state SET record = ? WHERE name = 'hard'").run(bad);
  db2.close();
  assert.throws(() => new SqliteStorage({ path: path2 }), /raft hard state: checksum mismatch/);
});

Deno.test("SqliteStorage: a corrupt last entry is caught at open (it decides votes)", () => {
  const path = freshPath();
  const s = new SqliteStorage({ path });
  s.saveReady({ entries: [ent(1, 1), ent(1, 2, 3)] });
  s.close();
  const db = new DatabaseSync(path);
  db.prepare("UPDATE raft_entries SET data = ? WHERE idx = 2").run(new Uint8Array([1, 2, 3]));
  db.close();
  assert.throws(() => new SqliteStorage({ path }), /Corrupt record at index 2/);
});

Deno.test("SqliteStorage: a snapshot in a Ready replaces the log and sets the applied state", () => {
  let s = new SqliteStorage({ path: freshPath(), confState: { voters: [1], learners: [] } });
  s.setApplied({ index: 0, confState: { voters: [1], learners: [] }, addresses: [[1, "h:1"]] });
  s.saveReady({ entries: [ent(1, 1), ent(1, 2)], hardState: { term: 1, vote: 1, commit: 1 } });
  const snapshot: Snapshot = {
    metadata: { index: 10, term: 3, confState: { voters: [1, 2], learners: [4] } },
    data: new Uint8Array([1, 0]),
  };
  s.saveReady({ snapshot, entries: [], hardState: { term: 3, vote: 0, commit: 10 } });
  s = reopen(s);
  try {
    assert.equal(s.firstIndex(), 11);
    assert.equal(s.lastIndex(), 10);
    assert.equal(s.term(10), 3);
    assert.deepEqual(s.snapshot(), snapshot);
    assert.deepEqual(
      s.appliedState(),
      {
        index: 10,
        confState: { voters: [1, 2], learners: [4] },
        addresses: [[1, "h:1"]],
      } satisfies AppliedState,
    );
    s.saveReady({ entries: [ent(3, 11), ent(4, 12)] });
    assert.equal(s.term(12), 4);
  } finally {
    s.close();
  }
});

Deno.test("SqliteStorage: WAL mode, synchronous FULL by default and configurable", () => {
  const pragma = (path: string) => {
    const db = new DatabaseSync(path);
    try {
      return (db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode;
    } finally {
      db.close();
    }
  };
  const s = new SqliteStorage({ path: freshPath() });
  assert.equal(s.synchronous, "full");
  s.close();
  assert.equal(pragma(s.path), "wal");
  const t = new SqliteStorage({ path: freshPath(), synchronous: "normal" });
  assert.equal(t.synchronous, "normal");
  t.close();
  assert.throws(
    () => new SqliteStorage({ path: freshPath(), synchronous: "sometimes" as "full" }),
    RangeError,
  );
});

Deno.test("SqliteStorage: saveReadyAsync commits at once and syncs the WAL off the loop", async () => {
  const syncs: string[] = [];
  const original = Deno.FsFile.prototype.syncData;
  Deno.FsFile.prototype.syncData = function (this: Deno.FsFile) {
    syncs.push("sync");
    return original.call(this);
  };
  let s = new SqliteStorage({ path: freshPath(), confState: { voters: [1], learners: [] } });
  try {
    const durable = s.saveReadyAsync({
      hardState: { term: 1, vote: 1, commit: 0 },
      entries: [ent(1, 1, 5), ent(1, 2, 5)],
    });
    assert.ok(durable instanceof Promise);
    // Readable at once (the core may read it), durable once the promise resolves.
    assert.equal(s.lastIndex(), 2);
    assert.deepEqual(syncs, ["sync"]);
    await durable;
    // Nothing to sync: no promise, and no fdatasync.
    assert.equal(
      s.saveReadyAsync({
        hardState: { term: 1, vote: 1, commit: 2 },
        entries: [],
        mustSync: false,
      }),
      undefined,
    );
    assert.deepEqual(syncs, ["sync"]);
    s.setApplied(
      { index: 2, confState: { voters: [1], learners: [] }, addresses: [], removed: [[4, "h:4"]] },
      true,
    );
    await s.saveReadyAsync({ entries: [ent(1, 3, 5)] });
    assert.deepEqual(syncs, ["sync", "sync"]);
    s = reopen(s);
    assert.equal(s.lastIndex(), 3);
    assert.deepEqual(s.hardState(), { term: 1, vote: 1, commit: 2 });
    assert.deepEqual(s.appliedState().removed, [[4, "h:4"]]);
  } finally {
    Deno.FsFile.prototype.syncData = original;
    s.close();
  }
  // With synchronous NORMAL there is no per-commit sync to wait for.
  const normal = new SqliteStorage({ path: freshPath(), synchronous: "normal" });
  try {
    assert.equal(normal.saveReadyAsync({ entries: [ent(1, 1)] }), undefined);
    assert.equal(normal.lastIndex(), 1);
  } finally {
    normal.close();
  }
});

Deno.test("SqliteStorage: terms as runs across many terms, truncations and compactions", () => {
  const s = new SqliteStorage({ path: freshPath(), cacheBytes: 40 });
  const model = new MemoryStorage();
  try {
    let index = 0;
    for (let term = 1; term <= 30; term++) {
      // Every third term overwrites a couple of entries of the previous one.
      if (term % 3 === 0 && index > 3) index -= 2;
      const es = Array.from({ length: 1 + (term % 4) }, () => ent(term, ++index, 4));
      s.saveReady({ entries: es });
      model.append(es);
      if (term % 7 === 0) {
        const at = index - 3;
        s.compact(at);
        model.compact(at);
      }
    }
    assert.equal(s.lastIndex(), model.lastIndex());
    assert.equal(s.firstIndex(), model.firstIndex());
    for (let i = s.firstIndex() - 1; i <= s.lastIndex(); i++) {
      assert.equal(s.term(i), model.term(i), `term(${i})`);
    }
    const all = (st: Storage) => st.entries(st.firstIndex(), st.lastIndex() + 1, Infinity);
    assert.deepEqual(all(s), all(model));
    const r = reopen(s, { cacheBytes: 40 });
    try {
      for (let i = r.firstIndex() - 1; i <= r.lastIndex(); i++) {
        assert.equal(r.term(i), model.term(i), `term(${i}) after reopen`);
      }
      assert.deepEqual(all(r), all(model));
    } finally {
      r.close();
    }
  } finally {
    s.close();
  }
});
