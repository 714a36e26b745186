/**
 * Secrets and configs as Docker's API shows them (v1.41 `swarm.Secret`, `swarm.Config`), and
 * their specs as request bodies. A secret's data is never shown; a config's is.
 *
 * @module
 */
import { z } from "zod";
import { Name, type SecretSpec } from "../../events/schema.ts";
import type { FileObjectRecord } from "../../actors/state.ts";
import { ApiError, parseWith } from "../http.ts";
import { meta, OptLabels, unsupported } from "./fields.ts";

/** Largest secret or config, in bytes (Docker's limit for secrets; Shoal's for both). */
export const MAX_DATA_BYTES = 500 * 1024;

const Data = z.string({ error: "must be base64-encoded bytes" }).regex(
  /^[A-Za-z0-9+/]*={0,2}$/,
  "must be base64-encoded bytes",
);

const SecretBody = z.strictObject({
  Name: Name,
  Labels: OptLabels,
  Data: Data.nullish(),
  Driver: unsupported("secret drivers"),
  Templating: unsupported("templating"),
});

const ConfigBody = z.strictObject({
  Name: Name,
  Labels: OptLabels,
  Data: Data.nullish(),
  Templating: unsupported("templating"),
});

/** `secret` or `config`. */
export type FileObjectKind = "secret" | "config";

function decodedLength(b64: string): number {
  const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  return Math.floor(b64.length * 3 / 4) - pad;
}

/** Converts a Docker secret or config spec (a create body) into Shoal's. */
export function fileObjectSpecFromDocker(kind: FileObjectKind, body: unknown): SecretSpec {
  const d = parseWith(kind === "secret" ? SecretBody : ConfigBody, body ?? {}, `${kind} spec`);
  const data = d.Data ?? "";
  const size = decodedLength(data);
  if (size < 1 || size > MAX_DATA_BYTES) {
    throw new ApiError(
      400,
      "invalid_argument",
      `invalid ${kind} spec: Data: ${kind} data must be larger than 0 and less than 500 KB`,
    );
  }
  return { name: d.Name, labels: d.Labels ?? {}, data };
}

/**
 * The labels of an update body (`POST /secrets/{id}/update`). As in Docker, only labels may
 * change: another name or other data is a 400.
 */
export function fileObjectLabelsFromDocker(
  kind: FileObjectKind,
  body: unknown,
  current: FileObjectRecord,
): Record<string, string> {
  const d = parseWith(kind === "secret" ? SecretBody : ConfigBody, body ?? {}, `${kind} spec`);
  if (
    d.Name !== current.spec.name ||
    (d.Data != null && d.Data !== "" && d.Data !== current.spec.data)
  ) {
    throw new ApiError(
      400,
      "invalid_argument",
      `only updates to Labels are allowed (${kind} ${current.spec.name})`,
    );
  }
  return d.Labels ?? {};
}

/** A secret or config as Docker's `GET /secrets/{id}` or `GET /configs/{id}` shows it. */
export function fileObjectToDocker(kind: FileObjectKind, rec: FileObjectRecord) {
  const spec: Record<string, unknown> = { Name: rec.spec.name, Labels: { ...rec.spec.labels } };
  if (kind === "config") spec.Data = rec.spec.data;
  return { ...meta(rec), Spec: spec };
}
