/**
 * The servers the C# end-to-end tests talk to: the reference server (embedded
 * PostgreSQL, echo model), and the conformance package's `FaultyServer`,
 * driven over HTTP: `POST /__faults` queues "503,429,drop" answers and
 * `GET /__turn-ended/<conversation id>` waits for a turn's stored outcome.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FaultyServer } from "@convoke/conformance"
import { start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"

/** The reference server on a free port with its own embedded database. */
export const startReferenceServer = async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-unity-"))
  const server = await start(load([], { PORT: "0", CONVOKE_ECHO_DELAY_MS: "5", CONVOKE_DATA_DIR: dataDir }))
  return {
    url: server.url,
    close: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** The faulty server (`FaultyServer` of the conformance package), with Alice's API key. */
export const startFaultyServer = (): Promise<FaultyServer.Server> =>
  FaultyServer.start({ keys: [{ key: "alice-key-0123456789abcdef", userId: "alice" }] })
