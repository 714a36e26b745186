/**
 * Docker's network endpoints for swarm networks: `/networks`, `/networks/create`,
 * `/networks/{id}`.
 *
 * @module
 */
import { resolve } from "../../actors/lookup.ts";
import { ingressNetwork, usesIngress } from "../../actors/entities/network.ts";
import { empty, json, readJson } from "../http.ts";
import type { Router } from "../router.ts";
import { createdId, type DockerApiContext, requireSwarm, run } from "./context.ts";
import { Filters } from "./filters.ts";
import { networkSpecFromDocker, networkToDocker } from "./network_json.ts";

const NETWORK_FILTERS = ["dangling", "driver", "id", "label", "name", "scope", "type"];

/** Adds the network routes. */
export function addNetworkRoutes(router: Router, ctx: DockerApiContext): void {
  const state = () => ctx.manager.state;
  const find = (ref: string) => resolve("network", state().networks, state().networkNames, ref);

  router.get("/networks", ({ url }) => {
    requireSwarm(ctx);
    const f = Filters.fromUrl(url, NETWORK_FILTERS);
    const used = new Set<string>();
    const ingress = ingressNetwork(state());
    for (const svc of state().services.values()) {
      for (const n of svc.spec.task.networks) used.add(n.target);
      if (ingress !== undefined && usesIngress(svc.spec)) used.add(ingress.id);
    }
    const out = [];
    for (const n of state().networks.values()) {
      const dangling = String(!used.has(n.id));
      if (
        !f.prefix("id", n.id) || !f.some("name", (v) => n.spec.name.includes(v)) ||
        !f.exact("driver", n.spec.driver) || !f.exact("scope", n.spec.scope) ||
        !f.exact("type", "custom") || !f.labels("label", n.spec.labels) ||
        !f.some("dangling", (v) =>
          v === dangling || (v === "1" && dangling === "true") ||
          (v === "0" && dangling === "false"))
      ) continue;
      out.push(n);
    }
    out.sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    return json(out.map(networkToDocker));
  });

  router.post("/networks/create", async ({ req }) => {
    requireSwarm(ctx);
    const spec = networkSpecFromDocker(await readJson(req));
    const events = await run(ctx, { kind: "CreateNetwork", spec }, "network.create");
    return json({ Id: createdId(events), Warning: "" }, 201);
  });

  router.get("/networks/{id}", ({ params }) => {
    requireSwarm(ctx);
    return json(networkToDocker(find(params.id)));
  });

  router.delete("/networks/{id}", async ({ params }) => {
    requireSwarm(ctx);
    const net = find(params.id);
    await run(ctx, { kind: "RemoveNetwork", ref: net.id }, "network.rm");
    return empty(204);
  });
}
