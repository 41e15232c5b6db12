/**
 * The servers the C# end-to-end tests talk to: the reference server (embedded
 * PostgreSQL, echo model), and the conformance package's `FaultyServer`,
 * driven over HTTP: `POST /__faults` queues "503,429,drop" answers and
 * `GET /__turn-ended/<conversation id>` waits for a turn's stored outcome.
 * Cut proxies (`CutProxy` of `@convoke/core/testing`) in front of the
 * reference server are made and driven over HTTP too, by `startProxyControl`.
 */

import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FaultyServer } from "@convoke/conformance"
import { CutProxy } from "@convoke/core/testing"
import { start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"

/** Alice's API key, on the faulty server and on the keyed reference server. */
export const aliceKey = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz"

/**
 * The reference server on a free port with its own embedded database, without
 * request-rate limits: resumed streams and paged lists make many requests.
 * `env` adds settings (e.g. `CONVOKE_API_KEYS` for a server that checks keys).
 */
export const startReferenceServer = async (env: Record<string, string> = {}) => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-unity-"))
  const server = await start(
    load([], {
      PORT: "0",
      CONVOKE_ECHO_DELAY_MS: "5",
      CONVOKE_DATA_DIR: dataDir,
      CONVOKE_RATE_LIMIT_REQUESTS: "0",
      CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
      ...env
    })
  )
  return {
    url: server.url,
    metricsUrl: server.metricsUrl,
    close: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** The faulty server (`FaultyServer` of the conformance package), with Alice's API key. */
export const startFaultyServer = (): Promise<FaultyServer.Server> =>
  FaultyServer.start({ keys: [{ key: aliceKey, userId: "alice" }] })

/**
 * Makes and drives cut proxies to `target` for a program in another language:
 * `POST /proxies` with `{"cutAfterFrames":N,"extraBytes":M}` → `{"id","url"}`;
 * `POST /proxies/<id>/heal`, `POST /proxies/<id>/cut`, `GET /proxies/<id>/cut-done`
 * (answers once the proxy has cut) and `DELETE /proxies/<id>` → 204.
 */
export const startProxyControl = async (target: string) => {
  const proxies = new Map<string, CutProxy.CutProxy>()
  let next = 0
  const http = createServer(async (request, response) => {
    const [, root, id, action] = (request.url ?? "/").split("/")
    const proxy = id === undefined ? undefined : proxies.get(id)
    const done = (status: number, body?: unknown) => {
      if (body === undefined) response.writeHead(status).end()
      else response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body))
    }
    if (root !== "proxies") return done(404)
    if (request.method === "POST" && id === undefined) {
      let body = ""
      for await (const chunk of request) body += chunk
      const options = body === "" ? {} : (JSON.parse(body) as CutProxy.Options)
      const made = await CutProxy.make(target, options)
      const name = String(++next)
      proxies.set(name, made)
      return done(200, { id: name, url: made.url })
    }
    if (proxy === undefined) return done(404)
    if (request.method === "POST" && action === "heal") proxy.heal()
    else if (request.method === "POST" && action === "cut") proxy.cut()
    else if (request.method === "GET" && action === "cut-done") await proxy.cutDone
    else if (request.method === "DELETE" && action === undefined) {
      proxies.delete(id!)
      await proxy.close()
    } else return done(404)
    done(204)
  })
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    close: async () => {
      await Promise.all([...proxies.values()].map((proxy) => proxy.close()))
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    }
  }
}
