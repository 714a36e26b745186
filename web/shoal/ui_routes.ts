/**
 * Serves the dashboard (`web/ui/`): static files read from beside this module, no build step.
 * `/` and `/ui` redirect to `/ui/`. Only the files listed in {@linkcode UI_FILES} are served, so no
 * path can reach anything else.
 *
 * @module
 */
import { ApiError, baseHeaders } from "../http.ts";
import type { Router } from "../router.ts";

/** The dashboard's files and their content types. */
export const UI_FILES: Readonly<Record<string, string>> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
  "favicon.svg": "image/svg+xml",
};

const UI_DIR = new URL("../ui/", import.meta.url);

/** Scripts, styles and data come from this server only; nothing is inlined. */
const CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

async function serve(file: string): Promise<Response> {
  const type = UI_FILES[file];
  if (type === undefined) throw new ApiError(404, "not_found", "page not found");
  const bytes = await Deno.readFile(new URL(file, UI_DIR));
  return new Response(bytes, {
    headers: {
      ...baseHeaders(),
      "content-type": type,
      // Served from the working tree: always revalidate, so an upgraded node serves its own UI.
      "cache-control": "no-cache",
      "content-security-policy": CSP,
      "x-content-type-options": "nosniff",
    },
  });
}

function redirect(): Response {
  return new Response(null, { status: 302, headers: { ...baseHeaders(), location: "/ui/" } });
}

/** Adds `/`, `/ui`, `/ui/` and `/ui/{file}`. */
export function addUiRoutes(router: Router): void {
  router.get("/", redirect);
  router.get("/ui", redirect);
  router.get("/ui/", () => serve("index.html"));
  router.get("/ui/{file}", ({ params }) => serve(params.file));
}
