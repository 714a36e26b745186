import assert from "node:assert/strict";
import type { Io } from "./command.ts";
import type { Node, Swarm } from "./docker_types.ts";
import { ProgressDisplay } from "./service_progress.ts";
import { rootRotationProgress } from "./swarm_ca.ts";
import { tlsStatus } from "./node.ts";

function captureIo(): Io & { text: string } {
  const io = {
    text: "",
    out(t: string) {
      io.text += t;
      return Promise.resolve();
    },
    err: () => Promise.resolve(),
    readStdin: () => Promise.resolve(new Uint8Array()),
    isTty: false,
    columns: 80,
  };
  return io;
}

const OLD = { TrustRoot: "OLD\n", CertIssuerSubject: "S", CertIssuerPublicKey: "old-key" };
const BOTH = { TrustRoot: "OLD\nNEW\n", CertIssuerSubject: "S", CertIssuerPublicKey: "new-key" };
const NEW = { TrustRoot: "NEW\n", CertIssuerSubject: "S", CertIssuerPublicKey: "new-key" };

function swarm(tls: typeof OLD, rotating: boolean) {
  return {
    ID: "s",
    Version: { Index: 1 },
    Spec: {},
    JoinTokens: { Worker: "", Manager: "" },
    TLSInfo: tls,
    RootRotationInProgress: rotating,
  } as Swarm;
}

function node(tls: typeof OLD): Node {
  return { ID: "n", Version: { Index: 1 }, Description: { TLSInfo: tls } } as unknown as Node;
}

Deno.test("rootRotationProgress converges only when every node has the new root and trusts it alone", async () => {
  const io = captureIo();
  const display = new ProgressDisplay(io);
  // During the rotation the swarm shows the current root, issued by the new one.
  const during = { ...OLD, CertIssuerPublicKey: "new-key" };
  assert.equal(
    await rootRotationProgress(display, swarm(during, true), [node(OLD), node(BOTH)]),
    false,
  );
  assert.equal(
    await rootRotationProgress(display, swarm(during, true), [node(BOTH), node(BOTH)]),
    false,
  );
  // Over, but a node still trusts both roots.
  assert.equal(
    await rootRotationProgress(display, swarm(NEW, false), [node(NEW), node(BOTH)]),
    false,
  );
  assert.equal(
    await rootRotationProgress(display, swarm(NEW, false), [node(NEW), node(NEW)]),
    true,
  );
  // Not a terminal: only the digests print (lines with bars are left out, as Docker's).
  const digests = io.text.trim().split("\n");
  assert.equal(digests.length, 2);
  for (const line of digests) assert.match(line, /^desired root digest: sha256:[0-9a-f]{64}$/);
  assert.notEqual(digests[0], digests[1]);
});

Deno.test("tlsStatus: Docker's TLS STATUS column", () => {
  assert.equal(tlsStatus(NEW, NEW), "Ready");
  assert.equal(tlsStatus(BOTH, { ...OLD, CertIssuerPublicKey: "new-key" }), "Needs Rotation");
  assert.equal(tlsStatus(OLD, NEW), "Needs Rotation");
  assert.equal(tlsStatus(undefined, NEW), "Unknown");
  assert.equal(tlsStatus({}, NEW), "Unknown");
  assert.equal(tlsStatus(NEW, undefined), "Unknown");
});
