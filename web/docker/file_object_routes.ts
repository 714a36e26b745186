/**
 * Docker's secret and config endpoints, which are alike: `/secrets`, `/secrets/create`,
 * `/secrets/{id}`, `/secrets/{id}/update`, and the same under `/configs`.
 *
 * @module
 */
import { resolve } from "../../actors/lookup.ts";
import type { FileObjectRecord } from "../../actors/state.ts";
import { empty, json, optionalIntParam, readJson } from "../http.ts";
import type { Router } from "../router.ts";
import { createdId, type DockerApiContext, requireSwarm, run } from "./context.ts";
import {
  type FileObjectKind,
  fileObjectLabelsFromDocker,
  fileObjectSpecFromDocker,
  fileObjectToDocker,
} from "./file_object_json.ts";
import { Filters } from "./filters.ts";

const FILTERS = ["id", "label", "name", "names"];

/** Adds the routes of secrets or configs. */
export function addFileObjectRoutes(
  router: Router,
  ctx: DockerApiContext,
  kind: FileObjectKind,
): void {
  const base = `/${kind}s`;
  const tables = () => {
    const s = ctx.manager.state;
    return kind === "secret"
      ? { table: s.secrets, names: s.secretNames }
      : { table: s.configs, names: s.configNames };
  };
  const find = (ref: string): FileObjectRecord => {
    const { table, names } = tables();
    return resolve(kind, table, names, ref);
  };

  router.get(base, ({ url }) => {
    requireSwarm(ctx);
    const f = Filters.fromUrl(url, FILTERS);
    const out = [];
    for (const rec of tables().table.values()) {
      if (
        !f.prefix("id", rec.id) || !f.prefix("name", rec.spec.name) ||
        !f.exact("names", rec.spec.name) || !f.labels("label", rec.spec.labels)
      ) continue;
      out.push(rec);
    }
    out.sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    return json(out.map((rec) => fileObjectToDocker(kind, rec)));
  });

  router.post(`${base}/create`, async ({ req }) => {
    requireSwarm(ctx);
    const spec = fileObjectSpecFromDocker(kind, await readJson(req));
    const events = await run(
      ctx,
      { kind: "CreateFileObject", object: kind, spec },
      `${kind}.create`,
    );
    return json({ ID: createdId(events) }, 201);
  });

  router.get(`${base}/{id}`, ({ params }) => {
    requireSwarm(ctx);
    return json(fileObjectToDocker(kind, find(params.id)));
  });

  router.delete(`${base}/{id}`, async ({ params }) => {
    requireSwarm(ctx);
    const rec = find(params.id);
    await run(ctx, { kind: "RemoveFileObject", object: kind, ref: rec.id }, `${kind}.rm`);
    return empty(204);
  });

  router.post(`${base}/{id}/update`, async ({ req, url, params }) => {
    requireSwarm(ctx);
    const rec = find(params.id);
    const version = optionalIntParam(url, "version");
    const labels = fileObjectLabelsFromDocker(kind, await readJson(req), rec);
    await run(
      ctx,
      { kind: "UpdateFileObject", object: kind, ref: rec.id, labels, version },
      `${kind}.update`,
    );
    return empty(200);
  });
}
