/**
 * Servers the client tests talk to over real loopback sockets: the reference
 * server (`apps/server`, embedded PGlite, echo model) and the conformance
 * package's `FaultyServer` (a model that fails mid-reply on request, queued
 * 503/429/dropped-connection answers, turn-end notifications).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FaultyServer } from "@convoke/conformance"
import { start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"

/** The reference server on a free port with its own embedded database. */
export const startReferenceServer = async (overrides: Record<string, string> = {}) => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-client-"))
  const server = await start(
    load([], { PORT: "0", CONVOKE_ECHO_DELAY_MS: "5", CONVOKE_DATA_DIR: dataDir, ...overrides })
  )
  return {
    url: server.url,
    close: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** The test server (`FaultyServer` of the conformance package), with API keys for two users. */
export const startTestServer = (): Promise<FaultyServer.Server> =>
  FaultyServer.start({
    keys: [
      { key: "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz", userId: "alice" },
      { key: "bob-key-0123456789abcdef00-ghijklmnopqrstuvwxyz", userId: "bob" }
    ]
  })
