/**
 * Copying a store's SQLite file while rewriting its records: what `shoal log decrypt` (and an
 * encrypted copy of a plaintext store) needs for both the single manager's log
 * (`events/sqlite_log.ts`) and the Raft storage (`events/raft/sqlite_storage.ts`).
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { RecordCipher } from "./at_rest_cipher.ts";

/** How a copy's records are sealed: opened with `from`, sealed again with `to`. */
export interface RecipherOptions {
  /** The cipher the source was written with (none: plaintext). */
  readonly from?: RecordCipher;
  /** The cipher to write the copy with (none: plaintext, as `shoal log decrypt` wants). */
  readonly to?: RecordCipher;
}

/**
 * Copies the SQLite file `source` (not in use) to a new file `target` and runs `rewrite` on
 * the copy in one transaction; then vacuums the copy, so that no free page of it keeps what
 * was rewritten (a decrypted copy must not hold ciphertext, an encrypted one no plaintext).
 * If `rewrite` throws, the copy is removed and the error passes on. Returns what `rewrite`
 * returned.
 */
export function copyAndRewrite<T>(
  source: string,
  target: string,
  rewrite: (db: DatabaseSync) => T,
): T {
  const src = new DatabaseSync(source, { readOnly: true });
  try {
    src.prepare("VACUUM INTO ?").run(target);
  } finally {
    src.close();
  }
  const db = new DatabaseSync(target);
  let result: T;
  try {
    db.exec("BEGIN IMMEDIATE");
    result = rewrite(db);
    db.exec("COMMIT");
    db.exec("VACUUM");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    db.close();
    Deno.removeSync(target);
    throw err;
  }
  db.close();
  return result;
}
