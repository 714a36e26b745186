/**
 * {@linkcode SqliteStorage} encrypted at rest: nothing of an entry or a snapshot is plaintext in
 * the database or its WAL, a wrong key is named at open, and {@linkcode copyStorage} makes a
 * decrypted copy that reads like the original. (The behaviour suite also runs encrypted, in
 * sqlite_storage_test.ts.)
 */
import assert from "node:assert/strict";
import { AtRestCipher } from "../at_rest_cipher.ts";
import { CorruptRecordError } from "../codec.ts";
import { copyStorage, SqliteStorage } from "./sqlite_storage.ts";
import type { Entry } from "./types.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-raft-enc-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshPath = () => `${dir}/raft-${++n}.db`;
const utf8 = new TextEncoder();
const MARK = "web-plaintext-marker";
const SNAP = "state-of-the-swarm-marker";

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

const entries = (from: number, to: number): Entry[] =>
  Array.from({ length: to - from + 1 }, (_, k) => ({
    index: from + k,
    term: 1,
    type: "normal" as const,
    data: (from + k) % 5 === 0 ? new Uint8Array() : utf8.encode(`${MARK} entry ${from + k}`),
  }));

function fill(path: string, cipher?: AtRestCipher): SqliteStorage {
  const s = new SqliteStorage({ path, confState: { voters: [1], learners: [] }, cipher });
  s.saveReady({ entries: entries(1, 21), hardState: { term: 1, vote: 1, commit: 21 } });
  s.createSnapshot(12, undefined, utf8.encode(SNAP));
  return s;
}

Deno.test("SqliteStorage without a cipher leaves entries in the clear (the scan can fail)", () => {
  const path = freshPath();
  const s = fill(path);
  assert.ok(onDisk(path, MARK));
  s.close();
});

Deno.test("SqliteStorage with a cipher: no entry or snapshot is plaintext on disk", () => {
  const path = freshPath();
  const cipher = new AtRestCipher(crypto.getRandomValues(new Uint8Array(32)));
  const s = fill(path, cipher);
  assert.equal(onDisk(path, MARK), false, "plaintext in the db or its WAL while open");
  assert.equal(onDisk(path, SNAP), false);
  s.close();
  assert.equal(onDisk(path, MARK), false, "plaintext after close");

  const again = new SqliteStorage({ path, cipher, cacheBytes: 1 });
  const read = again.entries(1, 22, Infinity);
  assert.deepEqual(
    read.map((e) => new TextDecoder().decode(e.data)),
    entries(1, 21).map((e) => new TextDecoder().decode(e.data)),
  );
  // Empty entries stay empty: a restart tells data entries by their length.
  assert.deepEqual(again.dataIndexes(1, 21).length, 17);
  assert.equal(new TextDecoder().decode(again.snapshot().data), SNAP);
  again.close();
});

Deno.test("SqliteStorage names a wrong or missing key instead of handing out ciphertext", () => {
  const path = freshPath();
  fill(path, new AtRestCipher(new Uint8Array(32).fill(1))).close();
  const other = new AtRestCipher(new Uint8Array(32).fill(2));
  assert.throws(
    () => new SqliteStorage({ path, cipher: other }),
    (err) =>
      err instanceof CorruptRecordError && err.index === 21 &&
      /another data key/.test(err.message),
  );
  // Opened without the key, reading gives ciphertext only to a reader that asks for bytes, and
  // the codec above would refuse it; with the key of a plaintext store, every read is refused.
  const plainPath = freshPath();
  fill(plainPath).close();
  assert.throws(
    () => new SqliteStorage({ path: plainPath, cipher: other }),
    /index 21: entry data: cannot decrypt: the record is not encrypted/,
  );
});

Deno.test("copyStorage makes a decrypted copy, and an encrypted one back", () => {
  const path = freshPath();
  const cipher = new AtRestCipher(crypto.getRandomValues(new Uint8Array(32)));
  fill(path, cipher).close();
  const plain = freshPath();
  assert.deepEqual(copyStorage(path, plain, { from: cipher }), { entries: 21 });
  assert.ok(onDisk(plain, MARK));
  const p = new SqliteStorage({ path: plain });
  assert.equal(new TextDecoder().decode(p.entries(7, 8, Infinity)[0].data), `${MARK} entry 7`);
  assert.equal(new TextDecoder().decode(p.snapshot().data), SNAP);
  assert.equal(p.hardState().commit, 21);
  p.close();

  const back = freshPath();
  copyStorage(plain, back, { to: cipher });
  assert.equal(onDisk(back, MARK), false);
  const b = new SqliteStorage({ path: back, cipher });
  assert.equal(new TextDecoder().decode(b.entries(7, 8, Infinity)[0].data), `${MARK} entry 7`);
  b.close();

  const wrong = new AtRestCipher(new Uint8Array(32));
  assert.throws(() => copyStorage(path, freshPath(), { from: wrong }), /another data key/);
});
