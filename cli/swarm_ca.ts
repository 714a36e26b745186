/**
 * `shoal swarm ca`: shows the swarm's root CA certificate, or rotates it (`--rotate`), after
 * docker/cli `cli/command/swarm/ca.go` and `progress/root_rotation.go`: the rotation counts the
 * spec's `CAConfig.ForceRotate` up, then (unless `--detach`) follows the nodes until each holds a
 * certificate of the new root and trusts it alone, and prints the new root.
 *
 * @module
 */
import type { Io, Subcommand } from "./command.ts";
import type { Node, Swarm } from "./docker_types.ts";
import { CliError } from "./format.ts";
import { ProgressDisplay } from "./service_progress.ts";
import { parseDuration } from "./units.ts";

/** What the progress reads of the swarm (`GET /swarm`). */
interface SwarmTls extends Swarm {
  TLSInfo?: { TrustRoot?: string; CertIssuerSubject?: string; CertIssuerPublicKey?: string };
  RootRotationInProgress?: boolean;
}

const CERTS = "  rotated TLS certificates";
const ROOTS = "  rotated CA certificates";
/** One space: the roots' label is one character shorter, so the bars line up (Docker's). */
const ROOTS_ACTION = " ";

async function sha256Hex(text: string): Promise<string> {
  const sum = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return Array.from(sum, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One round of Docker's root rotation progress: the desired root's digest, how many nodes hold
 * a certificate of the signing root, and how many trust the swarm's root alone. Returns whether
 * the rotation has converged.
 */
export async function rootRotationProgress(
  display: ProgressDisplay,
  swarm: SwarmTls,
  nodes: Node[],
): Promise<boolean> {
  const want = swarm.TLSInfo ?? {};
  await display.write({
    id: "desired root digest",
    action: `sha256:${await sha256Hex(want.TrustRoot ?? "")}`,
  });
  let certs = 0;
  let roots = 0;
  for (const n of nodes) {
    const t = n.Description?.TLSInfo ?? {};
    if (
      t.CertIssuerPublicKey === want.CertIssuerPublicKey &&
      t.CertIssuerSubject === want.CertIssuerSubject
    ) certs++;
    if (t.TrustRoot === want.TrustRoot) roots++;
  }
  const total = nodes.length;
  await display.write({ id: CERTS, action: "", current: certs, total });
  if (certs === total && swarm.RootRotationInProgress !== true) {
    await display.write({ id: ROOTS, action: ROOTS_ACTION, current: roots, total });
    return roots === total;
  }
  await display.write({ id: ROOTS, action: ROOTS_ACTION, current: 0, total });
  return false;
}

/** Prints the swarm's current root CA, as `docker swarm ca` does. */
async function displayTrustRoot(io: Io, swarm: SwarmTls): Promise<void> {
  const root = swarm.TLSInfo?.TrustRoot ?? "";
  if (root === "") throw new CliError("no CA information available");
  await io.out(root.trim() + "\n");
}

/** `shoal swarm ca`. */
export const caCommand: Subcommand = {
  name: "ca",
  use: "[OPTIONS]",
  summary: "Display and rotate the root CA",
  flags: [
    {
      name: "cert-expiry",
      kind: "string",
      type: "duration",
      description: "Validity period for node certificates (ns|us|ms|s|m|h) (default 2160h0m0s)",
    },
    {
      name: "detach",
      short: "d",
      kind: "boolean",
      description: "Exit immediately instead of waiting for the root rotation to converge",
    },
    { name: "quiet", short: "q", kind: "boolean", description: "Suppress progress output" },
    {
      name: "rotate",
      kind: "boolean",
      description:
        "Rotate the swarm CA - if no certificate or key are provided, new ones will be generated",
    },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const sw = await env.client.get<SwarmTls>("/swarm");
    if (p.flags.rotate !== true) {
      if (p.changed.has("cert-expiry")) {
        throw new CliError("`--cert-expiry` flag requires the `--rotate` flag to update the CA");
      }
      await displayTrustRoot(env.io, sw);
      return;
    }
    const spec = sw.Spec;
    if (p.changed.has("cert-expiry")) {
      const raw = p.flags["cert-expiry"] as string;
      let expiry = 0;
      try {
        expiry = parseDuration(raw);
      } catch (err) {
        env.badFlag("cert-expiry", raw, err);
      }
      spec.CAConfig = { ...spec.CAConfig, NodeCertExpiry: expiry };
    }
    const forced = Number(spec.CAConfig?.ForceRotate ?? 0);
    spec.CAConfig = { ...spec.CAConfig, ForceRotate: forced + 1 };
    await env.client.post("/swarm/update", spec, { version: sw.Version.Index });
    if (p.flags.detach === true) return;

    const quiet = p.flags.quiet === true;
    const display = new ProgressDisplay(
      quiet ? { ...env.io, out: () => Promise.resolve(), isTty: false } : env.io,
    );
    await display.write({ id: "desired root digest", action: "" });
    await display.write({ id: CERTS, action: "" });
    await display.write({ id: ROOTS, action: ROOTS_ACTION });
    // Ctrl-C stops watching, not the rotation (Docker's words).
    let interrupted = false;
    let wake = () => {};
    const onInterrupt = () => {
      interrupted = true;
      wake();
    };
    Deno.addSignalListener("SIGINT", onInterrupt);
    try {
      let done = false;
      for (;;) {
        const now = await env.client.get<SwarmTls>("/swarm");
        if (done) {
          if (env.io.isTty && !quiet) await env.io.out("\n");
          if (!quiet) await displayTrustRoot(env.io, now);
          return;
        }
        const nodes = await env.client.get<Node[]>("/nodes");
        done = await rootRotationProgress(display, now, nodes);
        await new Promise<void>((r) => {
          const timer = setTimeout(r, 200);
          wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        if (interrupted) {
          if (!done) {
            await display.write({ id: "", message: "Operation continuing in background." });
            await display.write({
              id: "",
              message: "Use `shoal node ls --format '{{.ID}} {{.TLSStatus}}'` to check progress.",
            });
          }
          return;
        }
      }
    } finally {
      Deno.removeSignalListener("SIGINT", onInterrupt);
    }
  },
};
