import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { ConversationStore } from "@convoke/core"
import { PgConversationStore, PgEmbedded } from "@convoke/store-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { SqlClient } from "effect/sql"

const run = promisify(execFile)

const canConnect = (host: string, port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, host)
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

describe("PgEmbedded", () => {
  let root: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "convoke-pglite-"))
  })
  afterAll(async () => {
    await rm(root, { recursive: true, force: true })
  })

  it.live(
    "persists conversations across a restart in its data directory",
    () =>
      Effect.gen(function* () {
        // A directory that does not exist yet: the layer creates it.
        const dataDir = join(root, "nested", "data")
        const userId = `user-${randomUUID()}`
        const id = randomUUID()
        const message: ConversationStore.NewMessage = {
          id: randomUUID(),
          role: "assistant",
          content: "Still here after a restart",
          status: "complete",
          createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, 2)),
          metadata: { model: "echo" }
        }

        const created = yield* Effect.gen(function* () {
          const store = yield* ConversationStore.ConversationStore
          const conversation = yield* store.create({
            id,
            userId,
            title: "Persistent",
            now: new Date(Date.UTC(2026, 0, 1))
          })
          expect(yield* store.append({ userId, conversationId: id, messages: [message] })).toBe(true)
          return conversation
        }).pipe(Effect.provide(PgConversationStore.layerEmbedded({ dataDir })))
        expect((yield* Effect.promise(() => readdir(dataDir))).length).toBeGreaterThan(0)

        yield* Effect.gen(function* () {
          const store = yield* ConversationStore.ConversationStore
          expect(store.name).toBe("pglite")
          const found = yield* store.find({ userId, id })
          expect(found).toEqual(Option.some({ ...created, updatedAt: message.createdAt }))
          expect(yield* store.history({ userId, conversationId: id })).toEqual([
            { ...message, conversationId: id }
          ])
        }).pipe(Effect.provide(PgConversationStore.layerEmbedded({ dataDir })))
      }),
    60_000
  )

  it.live(
    "serves the database on a loopback port while its scope is open",
    () =>
      Effect.gen(function* () {
        const server = yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* PgEmbedded.start({ dataDir: "memory://" })
            expect(server.host).toBe("127.0.0.1")
            expect(server.port).toBeGreaterThan(0)
            expect(server.dataDir).toBe("memory://")
            expect(yield* Effect.promise(() => canConnect(server.host, server.port))).toBe(true)
            return server
          })
        )
        // Closed with its scope: nothing listens on the port any more.
        expect(yield* Effect.promise(() => canConnect(server.host, server.port))).toBe(false)
      }),
    60_000
  )

  it.live(
    "runs queries from many fibers over its single connection",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const results = yield* Effect.forEach(
          Array.from({ length: 64 }, (_, index) => index),
          (index) => sql<{ readonly value: number }>`SELECT ${index}::int4 AS value`.withoutTransform,
          { concurrency: "unbounded" }
        )
        expect(results.map(([row]) => row!.value)).toEqual(Array.from({ length: 64 }, (_, index) => index))
        const [connections] = yield* sql<{ readonly count: number }>`
          SELECT count(*)::int4 AS count FROM pg_stat_activity WHERE backend_type = 'client backend'`
          .withoutTransform
        expect(connections!.count).toBeLessThanOrEqual(1)
      }).pipe(Effect.provide(PgEmbedded.layer({ dataDir: "memory://" }))),
    60_000
  )

  it.live(
    "fails with StoreUnavailable, saying why, when it cannot create the database",
    () =>
      Effect.gen(function* () {
        // Files where PostgreSQL's initdb needs directories.
        const dataDir = join(root, "blocked")
        yield* Effect.promise(async () => {
          await mkdir(dataDir)
          await writeFile(join(dataDir, "global"), "")
          await writeFile(join(dataDir, "base"), "")
        })
        const error = yield* Effect.flip(Effect.scoped(PgEmbedded.start({ dataDir })))
        expect(error._tag).toBe("StoreUnavailable")
        expect(String(error.cause)).toContain(`Creating the embedded database in ${dataDir} failed`)
        // Nothing half-made passes for a database at the next start.
        expect(yield* Effect.promise(() => readdir(dataDir))).not.toContain("PG_VERSION")
      }),
    60_000
  )

  it.live(
    "creates the database in process where no child process may run",
    () =>
      Effect.gen(function* () {
        // Node's permission model without `--allow-child-process`: the child
        // that creates a new database elsewhere is refused.
        const dataDir = join(root, "permission-model")
        const { stdout } = yield* Effect.promise(() =>
          run(process.execPath, [
            "--permission",
            "--allow-fs-read=*",
            "--allow-fs-write=*",
            fileURLToPath(new URL("./startEmbedded.ts", import.meta.url)),
            dataDir
          ])
        )
        expect(JSON.parse(stdout).port).toBeGreaterThan(0)
        expect(yield* Effect.promise(() => readdir(dataDir))).toContain("PG_VERSION")
      }),
    60_000
  )

  it("defaults to ./.convoke/data", () => {
    expect(PgEmbedded.defaultDataDir).toBe("./.convoke/data")
  })
})
