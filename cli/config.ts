/**
 * `shoal config`: create (from a file or `-` for standard input), inspect, ls, rm, as Docker's
 * CLI (docker/cli `cli/command/config`).
 *
 * @module
 */
import { runGroup } from "./command.ts";
import { CONFIG_KIND, fileObjectCommands } from "./file_object.ts";

/** Runs `shoal config ...`. */
export function configCommand(args: string[]): Promise<number> {
  return runGroup("config", "Manage Swarm configs", fileObjectCommands(CONFIG_KIND), args);
}
