/**
 * The API on TCP with mutual TLS (`--api-tls-addr`), with real processes: a manager's
 * certificate opens it (Docker's `--tlsverify` flags, and `DOCKER_CERT_PATH`); no certificate,
 * a worker's, and another swarm's are refused with a clear error, and the refusal is logged.
 */
import assert from "node:assert/strict";
import { createNodeCSR, createRootCA, issueNodeCertificate } from "../../node/ca.ts";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, sleep, until } from "./_processes.ts";

const root = new URL("../../", import.meta.url).pathname;

async function shoalEnv(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(`${root}shoal`, {
    args,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("--api-tls-addr: managers' certificates only", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-apitls-" });
  const [clusterPort, apiPort, tlsPort] = freePorts(3);
  const nodes: NodeProcess[] = [];
  const tlsHost = `tcp://127.0.0.1:${tlsPort}`;
  const certs = (d: string) => [
    "--tlsverify",
    "--tlscacert",
    `${dir}/${d}/certificates/swarm-root-ca.crt`,
    "--tlscert",
    `${dir}/${d}/certificates/swarm-node.crt`,
    "--tlskey",
    `${dir}/${d}/certificates/swarm-node.key`,
  ];
  try {
    let workerId = "";
    const m = new NodeProcess(
      "manager",
      initArgs({
        dataDir: `${dir}/m`,
        listen: `127.0.0.1:${clusterPort}`,
        apiPort,
        extra: ["--api-tls-addr", `127.0.0.1:${tlsPort}`],
      }),
    );
    nodes.push(m);
    await t.step("the manager prints its TLS API", async () => {
      await m.waitFor(/Press Ctrl-C to stop/);
      assert.match(
        m.stdout,
        new RegExp(
          `\\n {2}API \\(TLS\\) {2}https://127\\.0\\.0\\.1:${tlsPort} {3}\\(shoal --tlsverify --host tcp://127\\.0\\.0\\.1:${tlsPort} \\.\\.\\., managers' certificates only\\)\\n`,
        ),
      );
      const [, token, addr] = m.stdout.match(/--token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)!;
      const w = new NodeProcess("worker", joinArgs({ dataDir: `${dir}/w`, token, addr }));
      nodes.push(w);
      [, workerId] = await w.waitFor(/node {7}([0-9a-z]{25}), worker/);
      await w.waitFor(/Press Ctrl-C to stop/);
    });

    await t.step("a manager's certificate opens it (flags, and DOCKER_CERT_PATH)", async () => {
      const ls = await until("2 nodes over TLS", async () => {
        const r = await shoal([...certs("m"), "-H", tlsHost, "node", "ls", "--format", "{{.ID}}"]);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim().split("\n").length === 2 && r;
      });
      assert.match(ls.stdout, new RegExp(workerId));
      const certDir = `${dir}/docker-certs`;
      await Deno.mkdir(certDir);
      await Deno.copyFile(`${dir}/m/certificates/swarm-root-ca.crt`, `${certDir}/ca.pem`);
      await Deno.copyFile(`${dir}/m/certificates/swarm-node.crt`, `${certDir}/cert.pem`);
      await Deno.copyFile(`${dir}/m/certificates/swarm-node.key`, `${certDir}/key.pem`);
      const r = await shoalEnv(["service", "ls", "--format", "{{.Name}}"], {
        DOCKER_HOST: tlsHost,
        DOCKER_TLS_VERIFY: "1",
        DOCKER_CERT_PATH: certDir,
      });
      assert.equal(r.code, 0, r.stderr);
      // Without TLS options the CLI speaks plain HTTP: the TLS port does not answer it.
      const plain = await shoal(["-H", tlsHost, "node", "ls"]);
      assert.notEqual(plain.code, 0);
    });

    await t.step("a worker's certificate is refused, with a clear error, logged", async () => {
      const r = await shoal([...certs("w"), "-H", tlsHost, "node", "ls"]);
      assert.notEqual(r.code, 0);
      assert.equal(
        r.stderr,
        `Error response from daemon: node ${workerId} presented a worker certificate: only managers may use the API\n`,
      );
      await until("the refusal logged", () =>
        Promise.resolve(
          m.stderr.includes(`api (tls): refused a client from 127.0.0.1: node ${workerId}`),
        ));
    });

    await t.step("no certificate, and another swarm's, are refused", async () => {
      const ca = await Deno.readTextFile(`${dir}/m/certificates/swarm-root-ca.crt`);
      const bare = Deno.createHttpClient({ caCerts: [ca] });
      try {
        const res = await fetch(`https://127.0.0.1:${tlsPort}/nodes`, { client: bare });
        assert.equal(res.status, 403);
        assert.match((await res.json()).message, /^a client certificate is required/);
      } finally {
        bare.close();
      }
      const other = await createRootCA({ clusterId: "othercluster0000000000000", now: Date.now() });
      const csr = await createNodeCSR({ nodeId: "intruder00000000000000000" });
      const cert = await issueNodeCertificate({
        rootCA: other,
        csrPem: csr.csrPem,
        nodeId: "intruder00000000000000000",
        role: "manager",
        clusterId: "othercluster0000000000000",
        now: Date.now(),
      });
      const rogue = Deno.createHttpClient({ caCerts: [ca], cert: cert.certPem, key: csr.keyPem });
      try {
        const res = await fetch(`https://127.0.0.1:${tlsPort}/nodes`, { client: rogue });
        assert.equal(res.status, 403);
        assert.match(
          (await res.json()).message,
          /^the client certificate is refused: invalid node certificate: not signed by this cluster's root CA/,
        );
      } finally {
        rogue.close();
      }
      await until("the refusals logged", () =>
        Promise.resolve(
          m.stderr.includes("a client certificate is required") &&
            m.stderr.includes("not signed by this cluster's root CA"),
        ));
    });
  } finally {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.race([Promise.all(nodes.map((n) => n.done)), sleep(10_000)]);
    for (const n of nodes) n.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.done));
    await Deno.remove(dir, { recursive: true });
  }
});
