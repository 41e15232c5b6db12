import * as PgTesting from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"

// Skipped on a machine without the test PostgreSQL server; under CI its absence fails the run.
const reachable = await PgTesting.requireServer(it)

describe("testing helpers", () => {
  it("reports an unreachable server as such", async () => {
    expect(await PgTesting.isServerReachable({ adminUrl: "postgres://postgres@127.0.0.1:1/postgres" })).toBe(
      false
    )
  })

  it("fails a CI run whose server is unreachable, naming the server but not its password", async () => {
    const registered: Array<{ readonly name: string; readonly body: () => void }> = []
    const run = await PgTesting.requireServer((name, body) => registered.push({ name, body }), {
      adminUrl: "postgres://postgres:secret@127.0.0.1:1/postgres",
      ci: true
    })
    expect(run).toBe(false)
    expect(registered.map(({ name }) => name)).toEqual([
      "PostgreSQL at postgres://postgres:***@127.0.0.1:1/postgres is reachable"
    ])
    expect(registered[0]!.body).toThrow(/is not reachable, and CI is set/)
  })

  // Needs the PostgreSQL server of the test machines (see `reachable`).
  it.skipIf(!reachable)("creates an empty database and drops it", async () => {
    const database = await PgTesting.makeTestDatabase()
    expect(database.name).toMatch(/^convoke_test_[0-9a-f]{16}$/)
    expect(new URL(database.url).pathname).toBe(`/${database.name}`)
    const exists = (name: string) =>
      Effect.runPromise(
        Effect.gen(function* () {
          const sql = yield* PgClient.PgClient
          const rows = yield* sql`SELECT 1 FROM pg_database WHERE datname = ${name}`
          return rows.length > 0
        }).pipe(
          Effect.provide(PgClient.layer({ url: Redacted.make(PgTesting.adminUrl()), maxConnections: 1 }))
        )
      )
    try {
      expect(await exists(database.name)).toBe(true)
      // An open connection does not keep the database from being dropped.
      await Effect.runPromise(
        Effect.gen(function* () {
          const sql = yield* PgClient.PgClient
          yield* sql`SELECT 1`
          yield* Effect.promise(() => database.drop())
        }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(database.url), maxConnections: 1 })))
      ).catch(() => undefined)
      expect(await exists(database.name)).toBe(false)
    } finally {
      await database.drop()
    }
  })

  it.skipIf(!reachable)("announces the rows written to a table as they commit, until closed", async () => {
    const database = await PgTesting.makeTestDatabase()
    const run = (query: string) =>
      Effect.runPromise(
        Effect.gen(function* () {
          const sql = yield* PgClient.PgClient
          return yield* sql.unsafe(query)
        }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(database.url), maxConnections: 1 })))
      )
    try {
      await run("CREATE TABLE notes (id int PRIMARY KEY, body text, secret text)")
      const writes = await PgTesting.watchWrites(database.url, "notes", ["id", "body"])
      await run("INSERT INTO notes VALUES (1, 'first', 'x')")
      const pending = writes.written((row) => row.id === 1, 2)
      await run("UPDATE notes SET body = 'second' WHERE id = 1")
      // Earlier writes are kept: a predicate may match a row announced before it was asked.
      expect(await writes.written((row) => row.body === "first")).toEqual([{ id: 1, body: "first" }])
      expect(await pending).toEqual([
        { id: 1, body: "first" },
        { id: 1, body: "second" }
      ])
      await writes.close()
      expect(await run("SELECT tgname FROM pg_trigger WHERE tgrelid = 'notes'::regclass")).toEqual([])
    } finally {
      await database.drop()
    }
  })

  it.skipIf(!reachable)("fails to watch a table that does not exist", async () => {
    const database = await PgTesting.makeTestDatabase()
    try {
      await expect(PgTesting.watchWrites(database.url, "missing", ["id"])).rejects.toThrow()
    } finally {
      await database.drop()
    }
  })
})
