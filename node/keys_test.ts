import assert from "node:assert/strict";
import {
  createKeys,
  generateUnlockKey,
  initKeys,
  keyFilePath,
  openCipher,
  openKeys,
  parseKeyFile,
  parseUnlockKey,
  readKeyFile,
  rotateUnlockKey,
  UnlockError,
  unwrapDek,
} from "./keys.ts";
import { placeAad } from "../events/at_rest_cipher.ts";

Deno.test("unlock keys look like Docker's and parse back to 32 bytes", () => {
  const key = generateUnlockKey();
  assert.match(key, /^SWMKEY-1-[A-Za-z0-9+/]{43}$/);
  assert.equal(parseUnlockKey(key).byteLength, 32);
  assert.notEqual(generateUnlockKey(), key);
  assert.throws(
    () => parseUnlockKey("SWMTKN-1-abc"),
    /could not be unlocked: invalid key: an unlock key starts with SWMKEY-1-/,
  );
  assert.throws(() => parseUnlockKey("SWMKEY-1-abc"), /32 bytes in base64/);
});

Deno.test("without autolock the KEK is stored and the DEK unwraps with no key", async () => {
  const { file, dek, unlockKey } = await createKeys({ autolock: false });
  assert.equal(unlockKey, undefined);
  assert.equal(file.autolock, false);
  assert.equal(typeof file.kek, "string");
  assert.deepEqual(await unwrapDek(file), dek);
  // The stored file never holds the DEK in the clear.
  assert.ok(!JSON.stringify(file).includes(btoa(String.fromCharCode(...dek))));
});

Deno.test("with autolock only the unlock key opens the DEK; a wrong one is refused clearly", async () => {
  const { file, dek, unlockKey } = await createKeys({ autolock: true });
  assert.ok(unlockKey);
  assert.equal(file.kek, undefined);
  assert.ok(!JSON.stringify(file).includes(unlockKey.slice(9)));
  assert.deepEqual(await unwrapDek(file, unlockKey), dek);
  await assert.rejects(
    () => unwrapDek(file, generateUnlockKey()),
    (err: Error) =>
      err instanceof UnlockError &&
      err.message === "the swarm could not be unlocked: invalid key",
  );
  await assert.rejects(
    () => unwrapDek(file),
    /could not be unlocked: it is autolocked and no unlock key was given/,
  );
  await assert.rejects(() => unwrapDek(file, "nope"), /starts with SWMKEY-1-/);
});

Deno.test("rotating the unlock key rewraps the same DEK; the old key stops working", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { cipher, unlockKey } = await initKeys(dir, { autolock: true });
    assert.ok(unlockKey);
    const mode = (await Deno.stat(keyFilePath(dir))).mode! & 0o777;
    assert.equal(mode, 0o600);
    const sealed = cipher.seal(new TextEncoder().encode("x"), placeAad("t"));
    await assert.rejects(() => initKeys(dir, { autolock: false }), /already exists/);

    const rotated = await rotateUnlockKey(dir, { unlockKey });
    assert.ok(rotated.unlockKey && rotated.unlockKey !== unlockKey);
    await assert.rejects(() => openCipher(dir, unlockKey), /invalid key/);
    const again = await openCipher(dir, rotated.unlockKey);
    assert.deepEqual(again!.open(sealed, placeAad("t")), new TextEncoder().encode("x"));

    // Turning autolock off stores a KEK: no key needed any more, same DEK.
    const off = await rotateUnlockKey(dir, { unlockKey: rotated.unlockKey, autolock: false });
    assert.equal(off.unlockKey, undefined);
    assert.equal((await readKeyFile(dir))!.autolock, false);
    assert.equal((await openCipher(dir))!.keyId, cipher.keyId);
    assert.equal(await openCipher(`${dir}/none`), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a damaged key file is refused naming what is wrong", () => {
  assert.throws(() => parseKeyFile("{"), /not valid JSON/);
  assert.throws(() => parseKeyFile('{"version":2}'), /unknown version 2/);
  const base = { version: 1, dekId: "a", salt: "a", nonce: "a", wrappedDek: "a" };
  assert.throws(() => parseKeyFile(JSON.stringify({ ...base, autolock: false })), /must be stored/);
  assert.throws(
    () => parseKeyFile(JSON.stringify({ ...base, autolock: true, kek: "x" })),
    /must not hold/,
  );
});

Deno.test("a running manager's keys rotate without the old key, and take a shared one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { keys, unlockKey } = await initKeys(dir, { autolock: true });
    const sealed = keys.cipher.seal(new TextEncoder().encode("y"), placeAad("t"));
    const { unlockKey: next } = await keys.rotate();
    assert.ok(next && next !== unlockKey);
    await assert.rejects(() => openKeys(dir, unlockKey), /invalid key/);
    const shared = generateUnlockKey();
    assert.deepEqual(await keys.rotate({ unlockKey: shared }), { unlockKey: shared });
    const reopened = await openKeys(dir, shared);
    assert.equal(reopened!.autolock, true);
    assert.deepEqual(reopened!.cipher.open(sealed, placeAad("t")), new TextEncoder().encode("y"));
    assert.deepEqual(await keys.rotate({ autolock: false }), {});
    assert.equal((await openKeys(dir))!.autolock, false);
    await assert.rejects(() => keys.rotate({ unlockKey: shared }), /only used with autolock/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
