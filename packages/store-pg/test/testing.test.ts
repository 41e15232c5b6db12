import * as PgTesting from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"

const reachable = await PgTesting.isServerReachable()

describe("testing helpers", () => {
  it("reports an unreachable server as such", async () => {
    expect(await PgTesting.isServerReachable({ adminUrl: "postgres://postgres@127.0.0.1:1/postgres" })).toBe(
      false
    )
  })

  // Needs the PostgreSQL server of the test machines; the store tests fail
  // loudly on CI when it is missing, so here it is enough to skip.
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
