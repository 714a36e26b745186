/**
 * Secrets and configs: named blobs handed to the tasks that reference them. They share one shape
 * and one set of rules: unique names, labels may change, data never does, and one in use by a
 * service cannot be removed (Docker's rules).
 *
 * @module
 */
import type { EventOf, ShoalEvent } from "../../events/schema.ts";
import type { FileObjectCommand } from "../commands.ts";
import { resolve } from "../lookup.ts";
import { type DecideContext, userMeta } from "./decide_context.ts";
import type { ApplyContext, ClusterState, FileObjectRecord } from "../state.ts";
import type { Table } from "../table.ts";
import { EventRejected } from "./rejection.ts";

type FileObjectEvent = EventOf<
  | "SecretCreated"
  | "SecretUpdated"
  | "SecretRemoved"
  | "ConfigCreated"
  | "ConfigUpdated"
  | "ConfigRemoved"
>;

/** Folds one secret or config event into the state, or throws `EventRejected`. */
export function applyFileObjectEvent(
  state: ClusterState,
  event: FileObjectEvent,
  ctx: ApplyContext,
): void {
  const isSecret = event.type.startsWith("Secret");
  const kind = isSecret ? "secret" : "config";
  const table: Table<FileObjectRecord> = isSecret ? state.secrets : state.configs;
  const names = isSecret ? state.secretNames : state.configNames;
  const { data } = event;
  if (event.type === "SecretCreated" || event.type === "ConfigCreated") {
    if (table.has(data.id)) {
      throw new EventRejected("already_exists", `Cannot create ${kind} ${data.id}: id in use`);
    }
    const name = event.data.spec.name;
    if (names.has(name)) {
      throw new EventRejected(
        "name_conflict",
        `name conflicts with an existing object: ${kind} ${name} already exists`,
      );
    }
    table.put({ ...ctx.created(data.id), spec: event.data.spec });
    return;
  }
  const rec = table.get(data.id);
  if (rec === undefined) {
    throw new EventRejected("not_found", `Cannot change ${kind} ${data.id}: no such ${kind}`);
  }
  ctx.checkVersion(kind, table, rec, event.meta.expect);
  if (event.type === "SecretUpdated" || event.type === "ConfigUpdated") {
    table.put(ctx.touched({ ...rec, spec: { ...rec.spec, labels: event.data.labels } }));
    return;
  }
  const users: string[] = [];
  for (const service of state.services.values()) {
    const refs = isSecret ? service.spec.task.secrets : service.spec.task.configs;
    if (refs.some((r) => r.id === rec.id)) users.push(service.spec.name);
  }
  if (users.length > 0) {
    throw new EventRejected(
      "in_use",
      `${kind} '${rec.spec.name}' is in use by the following service: ${users.join(", ")}`,
    );
  }
  table.delete(rec.id);
}

/** Decides the events of a secret or config command, or throws `EventRejected`. */
export function decideFileObjectCommand(
  state: ClusterState,
  command: FileObjectCommand,
  ctx: DecideContext,
): ShoalEvent[] {
  const kind = command.object;
  const secret = kind === "secret";
  if (command.kind === "CreateFileObject") {
    const names = secret ? state.secretNames : state.configNames;
    if (names.has(command.spec.name)) {
      throw new EventRejected(
        "name_conflict",
        `name conflicts with an existing object: ${kind} ${command.spec.name} already exists`,
      );
    }
    return [{
      type: secret ? "SecretCreated" : "ConfigCreated",
      v: 1,
      data: { id: ctx.newId(), spec: command.spec },
      meta: userMeta(ctx, `${kind} create`),
    }];
  }
  const rec = secret
    ? resolve("secret", state.secrets, state.secretNames, command.ref)
    : resolve("config", state.configs, state.configNames, command.ref);
  if (command.kind === "UpdateFileObject") {
    return [{
      type: secret ? "SecretUpdated" : "ConfigUpdated",
      v: 1,
      data: { id: rec.id, labels: command.labels },
      meta: userMeta(ctx, `${kind} update`, command.version ?? rec.version),
    }];
  }
  return [{
    type: secret ? "SecretRemoved" : "ConfigRemoved",
    v: 1,
    data: { id: rec.id },
    meta: userMeta(ctx, `${kind} rm`, rec.version),
  }];
}
