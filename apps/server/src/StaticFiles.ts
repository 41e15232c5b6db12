/**
 * Serves a directory of built files (the demo page from `apps/web/dist`) for
 * `GET` and `HEAD` requests for paths the API does not claim. Anything it
 * does not find is left to the Convoke handler, so API paths and unknown
 * paths keep their JSON answers. Paths are resolved inside the directory only.
 */
import { createReadStream } from "node:fs"
import { stat } from "node:fs/promises"
import type { IncomingMessage, ServerResponse } from "node:http"
import { extname, join, normalize, sep } from "node:path"
import { fileURLToPath } from "node:url"

/** Where the web demo's build lands (`pnpm --filter @convoke/web build`, run by `npm start`). */
export const WEB_DEMO_DIR = fileURLToPath(new URL("../../web/dist/", import.meta.url))

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json"
}

// The page talks to its own origin only.
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
}

/**
 * A Node handler for the files under `root`: resolves `true` when it answered,
 * `false` when the request is not for it (then pass it on). `isApi` tells the
 * paths it must leave alone (`app.http.claims`).
 */
export const make =
  (root: string, isApi: (path: string) => boolean) =>
  async (request: IncomingMessage, response: ServerResponse): Promise<boolean> => {
    if (request.method !== "GET" && request.method !== "HEAD") return false
    let path: string
    try {
      path = decodeURIComponent(new URL(request.url ?? "/", "http://localhost").pathname)
    } catch {
      return false
    }
    if (isApi(path) || path.includes("\0")) return false
    const base = normalize(root.endsWith(sep) ? root : root + sep)
    const file = normalize(join(base, path === "/" ? "index.html" : path))
    if (!file.startsWith(base)) return false
    const info = await stat(file).catch(() => undefined)
    if (info === undefined || !info.isFile()) return false
    // A request whose body is still arriving cannot be followed by another on
    // this connection: close it after the answer instead of waiting for the rest.
    if (!request.complete && request.httpVersionMajor === 1) response.shouldKeepAlive = false
    response.writeHead(200, {
      ...SECURITY_HEADERS,
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "content-length": info.size,
      // Vite names assets by content hash; the page itself must be revalidated.
      "cache-control": file.includes(`${sep}assets${sep}`)
        ? "public, max-age=31536000, immutable"
        : "no-cache"
    })
    if (request.method === "HEAD") {
      response.end()
      return true
    }
    createReadStream(file)
      .on("error", () => response.destroy())
      .pipe(response)
    return true
  }
