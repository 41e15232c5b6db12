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
})
