import assert from "node:assert/strict";
import { newId } from "./ids.ts";
import { Id } from "./schema.ts";

Deno.test("newId makes distinct 25-character base-36 ids the schema accepts", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = newId();
    assert.match(id, /^[0-9a-z]{25}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 10_000);
  assert.equal(Id.safeParse(newId()).success, true);
});
