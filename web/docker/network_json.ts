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
import type { ClusterState, NetworkRecord } from "../../actors/state.ts";
import { ApiError, describeIssues, parseWith } from "../http.ts";
import { formatIPv4, gatewayOf, parseCidr } from "../../actors/projections/allocator/ipam.ts";
import { OptBool, OptLabels, OptString, rfc3339, unsupported } from "./fields.ts";

const IpamConfig = z.strictObject({
  Subnet: OptString,
  IPRange: unsupported("an IP range"),
  /** Accepted only as the subnet's first address, the gateway Shoal's IPAM reserves. */
  Gateway: OptString,
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
  const ipam = d.IPAM?.Config?.[0];
  if (ipam?.Gateway) {
    const subnet = ipam.Subnet ? parseCidr(ipam.Subnet) : undefined;
    const expected = subnet && formatIPv4(gatewayOf(subnet));
    if (ipam.Gateway !== expected) {
      throw new ApiError(
        400,
        "invalid_argument",
        `invalid network spec: IPAM.Config.0.Gateway: ${
          expected
            ? `must be ${expected}, the first address of ${ipam.Subnet} (Shoal reserves it as the gateway)`
            : "needs a subnet"
        }`,
      );
    }
  }
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

/**
 * A network's IPAM configs as Docker shows them: the subnet and gateway the allocator gave it,
 * else (not allocated yet) the subnet asked for.
 */
export function ipamConfigs(net: NetworkRecord): { Subnet: string; Gateway?: string }[] {
  if (net.subnet !== undefined) return [{ Subnet: net.subnet, Gateway: net.gateway ?? "" }];
  return net.spec.subnet ? [{ Subnet: net.spec.subnet }] : [];
}

/**
 * An address as Docker writes it, with its network's prefix length (`127.1.0.2/16`); bare when
 * the network is gone or has no subnet.
 */
export function addrWithPrefix(
  state: ClusterState,
  a: { readonly networkId: string; readonly addr: string },
): string {
  const subnet = state.networks.get(a.networkId)?.subnet;
  return subnet === undefined ? a.addr : `${a.addr}${subnet.slice(subnet.indexOf("/"))}`;
}

/**
 * A task's `NetworksAttachments` (SwarmKit's `NetworkAttachment`): each network, in short, with
 * the task's address on it.
 */
export function networkAttachmentsToDocker(
  state: ClusterState,
  networks: readonly { readonly networkId: string; readonly addr: string }[],
) {
  return networks.map((a) => {
    const net = state.networks.get(a.networkId);
    return {
      Network: net === undefined ? { ID: a.networkId } : {
        ID: net.id,
        Version: { Index: net.version },
        CreatedAt: rfc3339(net.createdAt),
        UpdatedAt: rfc3339(net.updatedAt),
        Spec: {
          Name: net.spec.name,
          Labels: { ...net.spec.labels },
          DriverConfiguration: { Name: net.spec.driver },
          Scope: net.spec.scope,
          Ingress: net.spec.ingress,
          Attachable: net.spec.attachable,
        },
        DriverState: { Name: net.spec.driver, Options: { ...net.spec.options } },
        IPAMOptions: {
          Driver: { Name: "default" },
          Configs: ipamConfigs(net),
        },
      },
      Addresses: [addrWithPrefix(state, a)],
    };
  });
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
      Config: ipamConfigs(net),
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
