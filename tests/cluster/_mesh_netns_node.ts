/**
 * One node of the mesh's network-namespace test (mesh_netns_test.ts), run inside its namespace:
 * a task (a server at its own 127.x address answering `<task>:<line>`) and the node's mesh with
 * a fixed map. Prints "ready" once both listen; runs until killed.
 *
 * @module
 */
import * as net from "node:net";
import { startMesh } from "../../node/mesh/mesh.ts";
import type { MeshMap } from "../../node/mesh/mesh_map.ts";

const config = JSON.parse(Deno.env.get("SHOAL_NETNS_NODE")!) as {
  nodeId: string;
  taskId: string;
  taskAddr: string;
  creds: { key: string; cert: string; ca: string };
  map: MeshMap;
  meshPort: number;
};

const server = net.createServer((socket) => {
  socket.on("error", () => {});
  let buf = "";
  socket.on("data", (chunk: Uint8Array) => {
    buf += new TextDecoder().decode(chunk);
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      socket.write(`${config.taskId}:${buf.slice(0, i)}\n`);
      buf = buf.slice(i + 1);
    }
  });
});
await new Promise<void>((r) => server.listen(8080, config.taskAddr, () => r()));
const mesh = await startMesh({
  nodeId: config.nodeId,
  source: { current: () => config.map, subscribe: () => () => {} },
  credentials: () => config.creds,
  meshPort: config.meshPort,
  logger: { info: () => {}, warn: (m) => console.error(m), error: (m) => console.error(m) },
});
if (mesh.dnsAddress === "") throw new Error("the resolver did not start");
console.log("ready");
