import assert from "node:assert/strict";
import { takeTlsFlag, tlsClientMaterial, type TlsFlags } from "./tls_client.ts";
import { CliError } from "./format.ts";

Deno.test("takeTlsFlag reads Docker's TLS options in both spellings", () => {
  const flags: TlsFlags = {};
  assert.equal(takeTlsFlag(["--tlsverify", "node"], flags), 1);
  assert.equal(takeTlsFlag(["--tlscacert", "/ca", "node"], flags), 2);
  assert.equal(takeTlsFlag(["--tlscert=/c"], flags), 1);
  assert.equal(takeTlsFlag(["--tlskey", "/k"], flags), 2);
  assert.equal(takeTlsFlag(["--tls=false"], flags), 1);
  assert.equal(takeTlsFlag(["--tlsbogus"], flags), 0);
  assert.deepEqual(flags, {
    tlsverify: true,
    tlscacert: "/ca",
    tlscert: "/c",
    tlskey: "/k",
    tls: false,
  });
});

Deno.test("tlsClientMaterial: off by default, files from the flags or DOCKER_CERT_PATH", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-tlsc-" });
  try {
    const env = (vars: Record<string, string>) => (k: string) => vars[k];
    assert.equal(await tlsClientMaterial({}, env({})), undefined);
    await Deno.writeTextFile(`${dir}/ca.pem`, "CA");
    await Deno.writeTextFile(`${dir}/cert.pem`, "CERT");
    await Deno.writeTextFile(`${dir}/key.pem`, "KEY");
    assert.deepEqual(
      await tlsClientMaterial({}, env({ DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: dir })),
      { caCerts: ["CA"], cert: "CERT", key: "KEY" },
    );
    await Deno.writeTextFile(`${dir}/other.crt`, "OTHER");
    assert.deepEqual(
      await tlsClientMaterial(
        { tlsverify: true, tlscert: `${dir}/other.crt` },
        env({ DOCKER_CERT_PATH: dir }),
      ),
      { caCerts: ["CA"], cert: "OTHER", key: "KEY" },
    );
    await assert.rejects(
      tlsClientMaterial(
        { tlsverify: true, tlskey: `${dir}/missing.key` },
        env({ DOCKER_CERT_PATH: dir }),
      ),
      (err: Error) =>
        err instanceof CliError &&
        err.message.startsWith(`could not read the client key ${dir}/missing.key (--tlskey`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
