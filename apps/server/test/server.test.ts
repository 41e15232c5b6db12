/**
 * The v0.3 wire contract (the shared conformance suite) against the reference
 * server over real sockets, with the embedded PGlite store and with the real
 * PostgreSQL server. The suite supplies the model and the API keys.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describeConformance, StoreProbe } from "@convoke/conformance"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import { startServer } from "./helpers.ts"

describeConformance("reference server on embedded PGlite", async ({ layer }) => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-server-"))
  // The suite's layer brings the metrics (its own `/metrics`): the server's own are off.
  const server = await startServer({ dataDir, metrics: "off" }, { layer })
  return {
    // PGlite serves one connection, the server's own: rows are read in the PostgreSQL variant.
    url: server.url,
    close: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
})

describeConformance("reference server on PostgreSQL", async ({ layer }) => {
  const database = await makeTestDatabase()
  const server = await startServer({ databaseUrl: database.url, metrics: "off" }, { layer })
  return {
    url: server.url,
    probe: StoreProbe.fromUrl(database.url),
    close: async () => {
      await server.close()
      await database.drop()
    }
  }
})
