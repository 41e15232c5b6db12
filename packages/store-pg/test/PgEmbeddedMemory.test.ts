// A file of its own: vitest runs each file in a process of its own, so the
// memory measured here is this database's alone, as in a server's first start.
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PgEmbedded } from "@convoke/store-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

describe("PgEmbedded's memory", () => {
  let root: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "convoke-pglite-memory-"))
  })
  afterAll(async () => {
    await rm(root, { recursive: true, force: true })
  })

  it.live(
    "keeps nothing of creating a new database once it is open",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          // PGlite creates a database with a WebAssembly instance of its own
          // (initdb): some 350 MB, garbage once the database is open.
          const before = process.memoryUsage().external
          yield* PgEmbedded.start({ dataDir: join(root, "new") })
          // Memory a collection frees is given back, and counted, a moment later.
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
          // The open database's own memory is about 140 MB.
          expect(process.memoryUsage().external - before).toBeLessThan(256 * 1024 * 1024)
        })
      ),
    60_000
  )
})
