import { PgApiKeyStore, PgConversationStore } from "@convoke/store-pg"
import * as PgTesting from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import { Headers } from "effect/http"
import { SqlClient } from "effect/sql"

// Skipped on a machine without the test PostgreSQL server; under CI its absence fails the run.
const reachable = await PgTesting.requireServer(it)

describe.skipIf(!reachable)("PgApiKeyStore on PostgreSQL", () => {
  let database: PgTesting.TestDatabase
  beforeAll(async () => {
    database = await PgTesting.makeTestDatabase()
  })
  afterAll(async () => {
    await database?.drop()
  })

  const layer = () =>
    PgApiKeyStore.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(database.url) })))

  it.live("creates keys hashed at rest, verifies them, and forgets revoked ones", () =>
    Effect.gen(function* () {
      // last_used_at is recorded in the background, after verify answers: the test awaits that write.
      const writes = yield* Effect.acquireRelease(
        Effect.promise(() =>
          PgTesting.watchWrites(database.url, "convoke_api_keys", ["user_id", "last_used_at"])
        ),
        (watch) => Effect.promise(watch.close)
      )
      const store = yield* PgApiKeyStore.PgApiKeyStore
      const sql = yield* SqlClient.SqlClient
      const laptop = yield* store.create({ userId: "alice", label: "laptop" })
      const phone = yield* store.create({ userId: "alice", label: "phone" })
      const bob = yield* store.create({ userId: "bob" })
      expect(laptop.key).toMatch(/^cvk_[A-Za-z0-9_-]{43}$/)
      expect(new Set([laptop.key, phone.key, bob.key]).size).toBe(3)

      // Neither the key nor any long piece of it is stored.
      const rows = yield* sql<Record<string, unknown>>`SELECT * FROM convoke_api_keys`.withoutTransform
      const dump = JSON.stringify(rows)
      expect(dump).not.toContain(laptop.key.slice(4, 24))
      expect(rows.find((row) => row.id === laptop.id)?.digest).toBe(PgApiKeyStore.digestOf(laptop.key))

      expect(Option.getOrThrow(yield* store.verify(laptop.key)).userId).toBe("alice")
      expect(Option.getOrThrow(yield* store.verify(bob.key)).userId).toBe("bob")
      // The same key with its last character changed.
      const altered = `${laptop.key.slice(0, -1)}${laptop.key.endsWith("A") ? "B" : "A"}`
      expect(Option.isNone(yield* store.verify(altered))).toBe(true)
      expect(Option.isNone(yield* store.verify("not a key"))).toBe(true)

      const listed = yield* store.list({ userId: "alice" })
      expect(listed.map((key) => key.label)).toEqual(["laptop", "phone"])
      expect(JSON.stringify(listed)).not.toContain(laptop.key)
      expect(yield* store.countActive).toBe(3)

      expect(yield* store.revoke(laptop.id)).toBe(true)
      expect(yield* store.revoke(laptop.id)).toBe(false)
      expect(yield* store.revoke("not-a-uuid")).toBe(false)
      expect(Option.isNone(yield* store.verify(laptop.key))).toBe(true)
      expect(Option.getOrThrow(yield* store.verify(phone.key)).userId).toBe("alice")
      expect(yield* store.countActive).toBe(2)
      const revoked = (yield* store.list()).find((key) => key.id === laptop.id)!
      expect(revoked.revokedAt).toBeInstanceOf(Date)

      yield* Effect.promise(() => writes.written((row) => row.user_id === "bob" && row.last_used_at !== null))
      expect((yield* store.list({ userId: "bob" }))[0]!.lastUsedAt).toBeInstanceOf(Date)
    }).pipe(Effect.provide(layer()))
  )

  it.live("authenticates as an identity provider from either header", () =>
    Effect.gen(function* () {
      const store = yield* PgApiKeyStore.PgApiKeyStore
      const identity = yield* PgApiKeyStore.identity
      const key = yield* store.create({ userId: "carol" })
      const bearer = yield* identity.authenticate(Headers.fromInput({ authorization: `Bearer ${key.key}` }))
      const header = yield* identity.authenticate(Headers.fromInput({ "x-api-key": key.key }))
      expect(bearer).toEqual({ userId: "carol" })
      expect(header).toEqual({ userId: "carol" })
      expect(identity.accepts?.(key.key)).toBe(true)
      expect(identity.accepts?.("eyJ.a.b")).toBe(false)
      yield* store.revoke(key.id)
      const error = yield* Effect.flip(
        identity.authenticate(Headers.fromInput({ authorization: `Bearer ${key.key}` }))
      )
      expect(error._tag).toBe("Unauthenticated")
    }).pipe(Effect.provide(layer()))
  )

  it.live("shares the conversation store's migrations, in either order", () =>
    Effect.gen(function* () {
      const store = yield* PgApiKeyStore.PgApiKeyStore
      expect(yield* store.countActive).toBeGreaterThanOrEqual(0)
    }).pipe(
      Effect.provide(
        PgApiKeyStore.layer.pipe(
          Layer.provideMerge(PgConversationStore.layer()),
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(database.url) }))
        )
      )
    )
  )
})
