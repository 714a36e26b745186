/**
 * `shoal secret`: create (from a file or `-` for standard input), inspect, ls, rm, as Docker's
 * CLI (docker/cli `cli/command/secret`). Removing a secret a service uses fails with the
 * manager's message.
 *
 * @module
 */
import { runGroup } from "./command.ts";
import { fileObjectCommands, SECRET_KIND } from "./file_object.ts";

/** Runs `shoal secret ...`. */
export function secretCommand(args: string[]): Promise<number> {
  return runGroup("secret", "Manage Swarm secrets", fileObjectCommands(SECRET_KIND), args);
}
