/**
 * Docker's system and swarm endpoints: `/_ping`, `/version`, `/info`, `/swarm`,
 * `/swarm/update`, and `/events`.
 *
 * @module
 */
import { equalData } from "../../actors/equal.ts";
import { newJoinToken, startRootRotation } from "../../node/ca.ts";
import { generateUnlockKey } from "../../node/keys.ts";
import {
  API_VERSION,
  ApiError,
  baseHeaders,
  boolParam,
  empty,
  json,
  MIN_API_VERSION,
  optionalIntParam,
  readJson,
  SHOAL_VERSION,
} from "../http.ts";
import type { Router } from "../router.ts";
import {
  clusterInfoToDocker,
  clusterSpecFromDocker,
  forceRotateRequested,
  swarmToDocker,
} from "./cluster_json.ts";
import { type DockerApiContext, requireSwarm, run, selfNode } from "./context.ts";
import { eventsResponse } from "./events.ts";
import { rfc3339 } from "./fields.ts";

function goArch(): string {
  return Deno.build.arch === "x86_64"
    ? "amd64"
    : Deno.build.arch === "aarch64"
    ? "arm64"
    : Deno.build.arch;
}

function kernelVersion(): string {
  try {
    return Deno.osRelease();
  } catch {
    return "";
  }
}

/** Adds the system and swarm routes. */
export function addSystemRoutes(router: Router, ctx: DockerApiContext): void {
  const ping = () => {
    const swarm = ctx.manager.state.cluster === undefined ? "inactive" : "active/manager";
    return new Response("OK", {
      headers: {
        ...baseHeaders(),
        "content-type": "text/plain; charset=utf-8",
        "docker-experimental": "false",
        "swarm": swarm,
        "cache-control": "no-cache, no-store, must-revalidate",
        "pragma": "no-cache",
      },
    });
  };
  router.get("/_ping", ping);

  router.get("/version", () => {
    // Named "Engine" so that `docker version` prints the API versions; the platform says Shoal.
    const details = {
      ApiVersion: API_VERSION,
      MinAPIVersion: MIN_API_VERSION,
      GitCommit: "",
      GoVersion: `deno ${Deno.version.deno}`,
      Os: Deno.build.os,
      Arch: goArch(),
      Experimental: "false",
      BuildTime: "",
    };
    return json({
      Platform: { Name: `Shoal ${SHOAL_VERSION}` },
      Components: [{ Name: "Engine", Version: SHOAL_VERSION, Details: details }],
      Version: SHOAL_VERSION,
      ApiVersion: API_VERSION,
      MinAPIVersion: MIN_API_VERSION,
      GitCommit: "",
      GoVersion: `deno ${Deno.version.deno}`,
      Os: Deno.build.os,
      Arch: goArch(),
      KernelVersion: kernelVersion(),
    });
  });

  router.get("/info", () => {
    const s = ctx.manager.state;
    const self = selfNode(ctx);
    const cluster = s.cluster;
    let managers = 0;
    const remoteManagers: { NodeID: string; Addr: string }[] = [];
    for (const n of s.nodes.values()) {
      if (n.role === "manager") managers++;
      if (n.managerStatus) remoteManagers.push({ NodeID: n.id, Addr: n.managerStatus.addr });
    }
    const d = self?.description;
    return json({
      ID: self?.id ?? "",
      Containers: 0,
      ContainersRunning: 0,
      ContainersPaused: 0,
      ContainersStopped: 0,
      Images: 0,
      Driver: "",
      Plugins: { Volume: [], Network: ["overlay"], Authorization: null, Log: [] },
      Debug: false,
      SystemTime: rfc3339(Date.now()),
      LoggingDriver: "",
      KernelVersion: kernelVersion(),
      OperatingSystem: `Shoal ${SHOAL_VERSION} on Deno ${Deno.version.deno}`,
      OSType: "linux",
      Architecture: d?.platform.architecture ?? Deno.build.arch,
      NCPU: d ? Math.round(d.resources.nanoCPUs / 1e9) : navigator.hardwareConcurrency,
      MemTotal: d?.resources.memoryBytes ?? 0,
      Name: d?.hostname ?? Deno.hostname(),
      Labels: [],
      ExperimentalBuild: false,
      ServerVersion: SHOAL_VERSION,
      Swarm: cluster === undefined
        ? {
          NodeID: "",
          NodeAddr: "",
          LocalNodeState: "inactive",
          ControlAvailable: false,
          Error: "",
          RemoteManagers: null,
        }
        : {
          NodeID: self?.id ?? "",
          NodeAddr: self?.status.addr ?? "",
          LocalNodeState: "active",
          ControlAvailable: true,
          Error: "",
          RemoteManagers: remoteManagers,
          Nodes: s.nodes.size,
          Managers: managers,
          Cluster: clusterInfoToDocker(cluster),
        },
      LiveRestoreEnabled: false,
      Warnings: [],
    });
  });

  router.get("/swarm", () => json(swarmToDocker(requireSwarm(ctx))));

  router.get("/swarm/unlockkey", () => json({ UnlockKey: requireSwarm(ctx).unlockKey ?? "" }));

  // A node that answers at all is unlocked (a locked one serves only this route: node/locked.ts).
  router.post("/swarm/unlock", () => {
    throw new ApiError(503, "unavailable", "swarm is not locked");
  });

  router.post("/swarm/update", async ({ req, url }) => {
    const cluster = requireSwarm(ctx);
    const version = optionalIntParam(url, "version");
    const rotateWorker = boolParam(url, "rotateWorkerToken");
    const rotateManager = boolParam(url, "rotateManagerToken");
    const rotateUnlock = boolParam(url, "rotateManagerUnlockKey");
    const body = await readJson(req);
    const spec = clusterSpecFromDocker(body, cluster.spec);
    const autolock = spec.encryption.autoLockManagers;
    if (rotateUnlock && !autolock) {
      throw new ApiError(
        400,
        "invalid_argument",
        "cannot rotate the manager unlock key: autolock is not turned on (shoal swarm update --autolock=true)",
      );
    }
    if (!equalData(spec, cluster.spec)) {
      await run(ctx, { kind: "UpdateCluster", spec, version }, "swarm.update");
    } else if (version !== undefined && version !== cluster.version) {
      throw new ApiError(
        409,
        "version_conflict",
        `update out of sequence: the swarm is at version ${cluster.version}, not ${version}`,
      );
    }
    // The unlock key follows autolock: made when it is turned on (or rotated), dropped when off.
    const hasKey = (requireSwarm(ctx).unlockKey ?? "") !== "";
    if (autolock && (rotateUnlock || !hasKey)) {
      await run(
        ctx,
        { kind: "RotateUnlockKey", unlockKey: generateUnlockKey() },
        "swarm.unlock-key",
      );
    } else if (!autolock && hasKey) {
      await run(ctx, { kind: "RotateUnlockKey", unlockKey: "" }, "swarm.update");
    }
    if (forceRotateRequested(body, cluster)) {
      // A new root, cross-signed by the current one; nodes follow (node/ca_rotation.ts).
      const current = requireSwarm(ctx);
      const rootCA = await startRootRotation(current.rootCA, {
        clusterId: current.id,
        now: Date.now(),
      });
      await run(ctx, { kind: "RotateRootCA", rootCA }, "swarm.ca-rotate");
    }
    for (const [role, rotate] of [["worker", rotateWorker], ["manager", rotateManager]] as const) {
      if (!rotate) continue;
      const token = newJoinToken(requireSwarm(ctx).rootCA);
      await run(ctx, { kind: "RotateJoinToken", role, token }, `swarm.rotate-${role}-token`);
    }
    return empty(200);
  });

  const alreadyInSwarm = () => {
    if (ctx.manager.state.cluster === undefined) {
      throw new ApiError(
        501,
        "not_implemented",
        "this Shoal node initialises its swarm when it starts (shoal start); it cannot join one through the Docker API",
      );
    }
    throw new ApiError(
      503,
      "already_in_swarm",
      'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.',
    );
  };
  router.post("/swarm/init", alreadyInSwarm);
  router.post("/swarm/join", alreadyInSwarm);

  router.get("/events", ({ url }) => eventsResponse(ctx.hub, ctx.manager, url));
}
