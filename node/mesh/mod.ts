/**
 * The per-node mesh (issues #4 and #8): the routing mesh of published ports, service virtual
 * IPs, and the node's resolver. Start one with {@linkcode startMesh}; see `mesh.ts`.
 *
 * @module
 */
export { Mesh, type MeshOptions, type MeshSource, startMesh, stateMeshSource } from "./mesh.ts";
export {
  EMPTY_MESH_MAP,
  type MeshMap,
  meshMapFromState,
  MeshMapSchema,
  type MeshNode,
  type MeshService,
  type MeshTask,
} from "./mesh_map.ts";
export { MeshIndex } from "./mesh_index.ts";
export { MeshMapFeed, sessionMeshSource } from "./feed.ts";
export { DEFAULT_MESH_PORT, type MeshCredentials } from "./peer.ts";
