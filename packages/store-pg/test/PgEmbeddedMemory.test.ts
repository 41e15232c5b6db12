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

  // First: the native heap a first start leaves behind is reused by any later
  // start in this process, which would then measure nothing.
  it.live(
    "a first start holds no more resident memory than a restart",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          // Creating the database runs PGlite's initdb; the memory it used
          // (about 120 MB of freed but resident native heap when it ran in
          // this process) must not stay with the server. A restart of an
          // existing database adds about 90 MB.
          const before = process.memoryUsage().rss
          yield* PgEmbedded.start({ dataDir: join(root, "first-start") })
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
          expect(process.memoryUsage().rss - before).toBeLessThan(150 * 1024 * 1024)
        })
      ),
    60_000
  )

  it.live(
    "keeps nothing of creating a database in memory once it is open",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          // PGlite creates a database with a WebAssembly instance of its own
          // (initdb): some 350 MB, garbage once the database is open. A
          // database in memory is created in this process.
          const before = process.memoryUsage().external
          yield* PgEmbedded.start({ dataDir: "memory://" })
          // Memory a collection frees is given back, and counted, a moment later.
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
          // The open database's own memory is about 140 MB.
          expect(process.memoryUsage().external - before).toBeLessThan(256 * 1024 * 1024)
        })
      ),
    60_000
  )
})
