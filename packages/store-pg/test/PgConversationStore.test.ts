import { randomUUID } from "node:crypto"
import { ConversationStore } from "@convoke/core"
import { PgConversationStore, PgEmbedded, PgMigrations } from "@convoke/store-pg"
import * as PgTesting from "@convoke/store-pg/testing"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import { SqlClient, Statement } from "effect/sql"
import { storeSuite } from "./storeSuite.ts"

// Skipped on a machine without the test PostgreSQL server; under CI its absence fails the run.
const reachable = await PgTesting.requireServer(it)

const at = (second: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, second))

/** Runs every store operation once, recording the SQL each one sends. */
const recordQueries = Effect.gen(function* () {
  const store = yield* ConversationStore.ConversationStore
  const statements: Array<readonly [string, ReadonlyArray<unknown>]> = []
  const record: Statement.Transformer = (statement) =>
    Effect.sync(() => {
      statements.push(statement.compile(true))
      return statement
    })
  const userId = `user-${randomUUID()}`
  const id = randomUUID()
  const message = (createdAt: Date, metadata?: Record<string, unknown>): ConversationStore.NewMessage => ({
    id: randomUUID(),
    role: "assistant",
    content: "content",
    status: "complete",
    createdAt,
    ...(metadata === undefined ? {} : { metadata })
  })
  yield* Effect.gen(function* () {
    yield* store.create({ id, userId, title: "Title", now: at(1) })
    yield* store.create({ id, userId, title: "Title", now: at(1) })
    yield* store.find({ userId, id })
    yield* store.append({ userId, conversationId: id, messages: [message(at(2))] })
    yield* store.append({ userId, conversationId: id, messages: [message(at(3)), message(at(4), { a: 1 })] })
    yield* store.append({ userId, conversationId: id, messages: [] })
    yield* store.history({ userId, conversationId: id })
    const page = yield* store.list({ userId, limit: 1 })
    yield* store.list({ userId, limit: 1, after: page.next ?? { updatedAt: at(9), id } })
    yield* store.rename({ userId, id, title: "Renamed", now: at(5) })
    yield* store.exists(id)
    yield* store.abandonment({ createdFrom: at(0), createdBefore: at(10) })
    yield* store.deleteAbandoned({ createdBefore: new Date(Date.UTC(1900, 0, 1)), limit: 10 })
    yield* store.remove({ userId, id })
  }).pipe(Effect.provideService(Statement.CurrentTransformer, record))
  return statements
})

/** Asserts the planner can serve every recorded statement without a sequential scan of a store table. */
const expectIndexedQueries = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const statements = yield* recordQueries
  expect(statements.length).toBeGreaterThanOrEqual(13)
  for (const [text, params] of statements) {
    const plan = yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SET LOCAL enable_seqscan = off`
        // On a near-empty table a sort costs nothing and the planner may pick
        // one; forbidding it asks whether an index can serve the order at all.
        yield* sql`SET LOCAL enable_sort = off`
        return yield* sql.unsafe<{ readonly "QUERY PLAN": string }>(`EXPLAIN ${text}`, params)
          .withoutTransform
      })
    )
    const lines = plan.map((row) => row["QUERY PLAN"]).join("\n")
    expect(lines, text).not.toMatch(/Seq Scan on convoke_/)
    // Listing reads the index in page order: no sort of the user's conversations.
    if (/ORDER BY updated_at DESC, id DESC/.test(text)) expect(lines, text).not.toMatch(/Sort/)
  }
})

/** Every migration's id, in order. */
const migrationIds = Object.keys(PgMigrations.migrations).map((name) => Number(name.split("_")[0]))

const migrationsRunTwice = Effect.gen(function* () {
  const first = yield* PgMigrations.run
  const second = yield* PgMigrations.run
  expect(first.map(([id]) => id)).toEqual(migrationIds)
  expect(second).toEqual([])
  const sql = yield* SqlClient.SqlClient
  const recorded = yield* sql<{ readonly migration_id: number }>`
    SELECT migration_id FROM convoke_migrations ORDER BY migration_id`.withoutTransform
  expect(recorded.map((row) => row.migration_id)).toEqual(migrationIds)
})

/**
 * A database migrated by an earlier release (migrations 1 and 2) with data in
 * it, upgraded to the current schema: conversations already answered must
 * not count as abandoned.
 */
const upgradeKeepsReplies = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const early = Object.fromEntries(
    Object.entries(PgMigrations.migrations).filter(
      ([key]) => key.startsWith("0001") || key.startsWith("0002")
    )
  )
  yield* PgMigrator.make({})({ loader: PgMigrator.fromRecord(early), table: PgMigrations.table })
  const old = new Date(Date.UTC(1995, 0, 1))
  const [answered, empty, unanswered] = [randomUUID(), randomUUID(), randomUUID()]
  for (const id of [answered, empty, unanswered]) {
    yield* sql`INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at)
      VALUES (${id}::uuid, 'upgrade-user', 't', ${old}, ${old})`
  }
  for (const [conversationId, role, content] of [
    [answered, "user", "q"],
    [answered, "assistant", "a"],
    [empty, "assistant", ""],
    [unanswered, "user", "q"]
  ] as const) {
    yield* sql`INSERT INTO convoke_messages (id, conversation_id, role, content, status, created_at)
      VALUES (${randomUUID()}::uuid, ${conversationId}::uuid, ${role}, ${content}, 'complete', ${old})`
  }
  expect((yield* PgMigrations.run).map(([id]) => id)).toEqual(migrationIds.slice(2))
  const store = yield* PgConversationStore.make()
  expect(yield* store.abandonment({ createdFrom: old, createdBefore: at(0) })).toEqual({
    created: 3,
    abandoned: 2
  })
  const removed = yield* store.deleteAbandoned({ createdBefore: at(0), limit: 10 })
  expect(new Set(removed.map((item) => item.id))).toEqual(new Set([empty, unanswered]))
  expect(yield* store.exists(answered)).toBe(true)
})

describe("PGlite", () => {
  storeSuite("PGlite in memory", "pglite", () => PgConversationStore.layerEmbedded({ dataDir: "memory://" }))

  it.live(
    "migrations running twice are harmless",
    () => migrationsRunTwice.pipe(Effect.provide(PgEmbedded.layer({ dataDir: "memory://" }))),
    60_000
  )

  it.live(
    "every query can use an index",
    () =>
      expectIndexedQueries.pipe(
        Effect.provide(
          PgConversationStore.layer().pipe(Layer.provideMerge(PgEmbedded.layer({ dataDir: "memory://" })))
        )
      ),
    60_000
  )

  it.live(
    "upgrading a database with conversations marks the answered ones",
    () => upgradeKeepsReplies.pipe(Effect.provide(PgEmbedded.layer({ dataDir: "memory://" }))),
    60_000
  )
})

describe("layerUrl", () => {
  it.live(
    "an unreachable server fails the layer with StoreUnavailable",
    () =>
      Effect.gen(function* () {
        const exit = yield* Effect.exit(
          Effect.provide(
            ConversationStore.ConversationStore.use(Effect.succeed),
            PgConversationStore.layerUrl("postgres://postgres@127.0.0.1:1/postgres", {
              connectTimeout: 2_000
            })
          )
        )
        expect(exit).toMatchObject({ _tag: "Failure" })
        expect(JSON.stringify(exit)).toContain("StoreUnavailable")
      }),
    60_000
  )
})

// These tests need the PostgreSQL server of the test machines (see TOOLCHAIN.md
// and `reachable`).
describe.skipIf(!reachable)("PostgreSQL", () => {
  let database: PgTesting.TestDatabase | undefined
  beforeAll(async () => {
    database = await PgTesting.makeTestDatabase()
  })
  afterAll(async () => {
    await database?.drop()
  })
  const url = () => database!.url

  storeSuite("PostgreSQL server", "postgres", () => PgConversationStore.layerUrl(url()))

  it.live(
    "migrations running twice, or at once from two pools, are harmless",
    () =>
      Effect.gen(function* () {
        const fresh = yield* PgTesting.scopedTestDatabase()
        const client = () => PgClient.layer({ url: Redacted.make(fresh.url), maxConnections: 2 })
        const applied = yield* Effect.all(
          [PgMigrations.run.pipe(Effect.provide(client())), PgMigrations.run.pipe(Effect.provide(client()))],
          { concurrency: 2 }
        )
        expect(applied.flat().map(([id]) => id)).toEqual(migrationIds)
        yield* PgMigrations.run.pipe(
          Effect.tap((again) => Effect.sync(() => expect(again).toEqual([]))),
          Effect.provide(client())
        )
        // Building the whole store again re-checks the migrations.
        for (let round = 0; round < 2; round++) {
          const found = yield* Effect.gen(function* () {
            const store = yield* ConversationStore.ConversationStore
            return yield* store.find({ userId: "nobody", id: randomUUID() })
          }).pipe(Effect.provide(PgConversationStore.layerUrl(fresh.url)))
          expect(found).toEqual(Option.none())
        }
      }),
    60_000
  )

  it.live(
    "migrations running twice on one client are harmless",
    () =>
      Effect.gen(function* () {
        const fresh = yield* PgTesting.scopedTestDatabase()
        yield* migrationsRunTwice.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(fresh.url) })))
      }),
    60_000
  )

  it.live(
    "every query can use an index",
    () =>
      expectIndexedQueries.pipe(
        Effect.provide(
          PgConversationStore.layer().pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url()) })))
        )
      ),
    60_000
  )

  it.live(
    "upgrading a database with conversations marks the answered ones",
    () =>
      Effect.gen(function* () {
        const fresh = yield* PgTesting.scopedTestDatabase()
        yield* upgradeKeepsReplies.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(fresh.url) })))
      }),
    60_000
  )

  it.live(
    "cleanup skips conversations another transaction holds instead of waiting, and a reply in flight keeps its conversation",
    () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const sql = yield* SqlClient.SqlClient
        const era = (minute: number) => new Date(Date.UTC(1950, 0, 1, 0, minute))
        const userId = `user-${randomUUID()}`
        const held = yield* store.create({ id: randomUUID(), userId, title: "held", now: era(1) })
        const free = yield* store.create({ id: randomUUID(), userId, title: "free", now: era(2) })
        const replying = yield* store.create({ id: randomUUID(), userId, title: "replying", now: era(3) })
        const cutoff = era(30)
        // `sql` is a second pool: its open transaction holds one row and
        // writes a reply to another, as a request on the hot path would.
        yield* sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`SELECT id FROM convoke_conversations WHERE id = ${held.id}::uuid FOR UPDATE`
            yield* sql`UPDATE convoke_conversations SET updated_at = ${era(40)} WHERE id = ${replying.id}::uuid`
            yield* sql`INSERT INTO convoke_messages (id, conversation_id, role, content, status, created_at)
              VALUES (${randomUUID()}::uuid, ${replying.id}::uuid, 'assistant', 'answer', 'complete', ${era(40)})`
            // Returns while the transaction is still open: locked rows are skipped, not waited for.
            const removed = yield* store.deleteAbandoned({ createdBefore: cutoff, limit: 10 })
            expect(removed).toEqual([{ id: free.id, userId }])
          })
        )
        // Once the transaction is over, the held conversation goes; the answered one stays.
        expect(yield* store.deleteAbandoned({ createdBefore: cutoff, limit: 10 })).toEqual([
          { id: held.id, userId }
        ])
        expect(yield* store.exists(replying.id)).toBe(true)
        expect(yield* store.abandonment({ createdFrom: era(0), createdBefore: cutoff })).toEqual({
          created: 1,
          abandoned: 0
        })
      }).pipe(
        Effect.provide(
          Layer.merge(
            PgConversationStore.layerUrl(url()),
            PgClient.layer({ url: Redacted.make(url()), maxConnections: 1 })
          )
        )
      ),
    60_000
  )

  it.live(
    "works on a client that renames result columns",
    () =>
      Effect.gen(function* () {
        const store = yield* ConversationStore.ConversationStore
        const userId = `user-${randomUUID()}`
        const conversation = yield* store.create({ id: randomUUID(), userId, title: "Camel", now: at(1) })
        expect(conversation.userId).toBe(userId)
        yield* store.append({
          userId,
          conversationId: conversation.id,
          messages: [{ id: randomUUID(), role: "user", content: "hi", status: "complete", createdAt: at(2) }]
        })
        const [stored] = yield* store.history({ userId, conversationId: conversation.id })
        expect(stored).toMatchObject({ conversationId: conversation.id, content: "hi", createdAt: at(2) })
      }).pipe(
        Effect.provide(
          PgConversationStore.layer().pipe(
            Layer.provide(
              PgClient.layer({
                url: Redacted.make(url()),
                transformResultNames: (name) =>
                  name.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase()),
                transformQueryNames: (name) => name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)
              })
            )
          )
        )
      ),
    60_000
  )
})
