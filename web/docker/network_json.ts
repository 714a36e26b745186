/**
 * Networks as Docker's API shows them (v1.41 `network.Inspect`), and Docker's network create
 * request as a body.
 *
 * A network created without a driver is an `overlay` one (Shoal has no local bridge); its scope
 * is `swarm` for overlay networks and `local` otherwise, unless the request says.
 *
 * @module
 */
import { z } from "zod";
import { Name, NetworkSpec } from "../../events/schema.ts";
import type { NetworkRecord } from "../../actors/state.ts";
import { ApiError, describeIssues, parseWith } from "../http.ts";
import { OptBool, OptLabels, OptString, rfc3339, unsupported } from "./fields.ts";

const IpamConfig = z.strictObject({
  Subnet: OptString,
  IPRange: unsupported("an IP range"),
  Gateway: unsupported("a gateway address"),
  AuxiliaryAddresses: unsupported("auxiliary addresses"),
});

/** Docker's `POST /networks/create` body. */
export const DockerNetworkCreate = z.strictObject({
  Name: Name,
  CheckDuplicate: OptBool,
  Driver: OptString,
  Scope: z.enum(["", "swarm", "local"], { error: 'must be "swarm" or "local"' }).nullish(),
  EnableIPv4: z.boolean().nullish().refine((v) => v !== false, {
    message: "must be true: Shoal networks are IPv4",
  }),
  EnableIPv6: unsupported("IPv6"),
  IPAM: z.strictObject({
    Driver: unsupported("IPAM drivers", ["default"]),
    Options: unsupported("IPAM options"),
    Config: z.array(IpamConfig).max(1, "Shoal networks have one subnet").nullish(),
  }).nullish(),
  Internal: OptBool,
  Attachable: OptBool,
  Ingress: OptBool,
  ConfigOnly: unsupported("config-only networks"),
  ConfigFrom: unsupported("networks configured from another"),
  Options: OptLabels,
  Labels: OptLabels,
});

/** Converts Docker's network create body into Shoal's network spec. */
export function networkSpecFromDocker(body: unknown): NetworkSpec {
  const d = parseWith(DockerNetworkCreate, body ?? {}, "network spec");
  const driver = d.Driver || "overlay";
  const spec = {
    name: d.Name,
    labels: d.Labels ?? {},
    driver,
    scope: d.Scope || (driver === "overlay" ? "swarm" : "local"),
    attachable: d.Attachable ?? false,
    internal: d.Internal ?? false,
    ingress: d.Ingress ?? false,
    subnet: d.IPAM?.Config?.[0]?.Subnet ?? "",
    options: d.Options ?? {},
  };
  const parsed = NetworkSpec.safeParse(spec);
  if (!parsed.success) {
    throw new ApiError(
      400,
      "invalid_argument",
      `invalid network spec: ${describeIssues(parsed.error.issues)}`,
    );
  }
  return parsed.data;
}

/** A network as Docker's `GET /networks/{id}` shows it. */
export function networkToDocker(net: NetworkRecord) {
  const s = net.spec;
  return {
    Name: s.name,
    Id: net.id,
    Created: rfc3339(net.createdAt),
    Scope: s.scope,
    Driver: s.driver,
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: {
      Driver: "default",
      Options: null,
      Config: s.subnet ? [{ Subnet: s.subnet }] : [],
    },
    Internal: s.internal,
    Attachable: s.attachable,
    Ingress: s.ingress,
    ConfigFrom: { Network: "" },
    ConfigOnly: false,
    Containers: {},
    Options: { ...s.options },
    Labels: { ...s.labels },
  };
}
