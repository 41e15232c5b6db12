import { randomUUID } from "node:crypto"
import { AuditLog, ConversationStore } from "@convoke/core"
import { PgAuditLog, PgConversationStore, PgEmbedded } from "@convoke/store-pg"
import * as PgTesting from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, Redacted, References } from "effect"
import { SqlClient } from "effect/sql"

// Skipped on a machine without the test PostgreSQL server; under CI its absence fails the run.
const reachable = await PgTesting.requireServer(it)

const at = (second: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, second))

const entries = (userId: string, conversationId: string): ReadonlyArray<AuditLog.Entry> => [
  {
    action: "conversation.created",
    cause: "temporary",
    userId,
    conversationId,
    requestId: "request-1",
    at: at(1)
  },
  { action: "conversation.cross_user_access", userId, conversationId, at: at(2) },
  { action: "conversation.deleted", cause: "cleanup", userId, conversationId, at: at(3) }
]

const rowsOf = (userId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<PgAuditLog.Row>`
      SELECT id, at, action, cause, user_id, conversation_id, request_id
      FROM convoke_audit_log WHERE user_id = ${userId} ORDER BY id`.withoutTransform
  })

/** Collects the messages of every log line written while `effect` runs. */
const captureLogs = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const lines: Array<{ readonly message: unknown; readonly annotations: Record<string, unknown> }> = []
    const logger = Logger.make((options) => {
      lines.push({
        message: options.message,
        annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) }
      })
    })
    const result = yield* effect.pipe(Effect.provide(Logger.layer([logger])))
    return { result, lines }
  })

/** The behaviour of the audit table, on whichever client `makeLayer` builds. */
const auditSuite = (makeClient: () => Layer.Layer<SqlClient.SqlClient, unknown>) => {
  const withStore = () =>
    Effect.provide(
      Layer.mergeAll(
        PgConversationStore.layerWithAuditLog().pipe(Layer.provideMerge(makeClient())),
        // Keeps the test output quiet; `captureLogs` installs its own logger.
        Logger.layer([])
      )
    )

  it.live(
    "records every entry as a row and a log line",
    () =>
      Effect.gen(function* () {
        const auditLog = yield* AuditLog.AuditLog
        const userId = `user-${randomUUID()}`
        const conversationId = randomUUID()
        const { lines } = yield* captureLogs(auditLog.record(entries(userId, conversationId)))
        const rows = yield* rowsOf(userId)
        expect(rows.map(({ id: _, ...row }) => row)).toEqual([
          {
            at: at(1),
            action: "conversation.created",
            cause: "temporary",
            user_id: userId,
            conversation_id: conversationId,
            request_id: "request-1"
          },
          {
            at: at(2),
            action: "conversation.cross_user_access",
            cause: null,
            user_id: userId,
            conversation_id: conversationId,
            request_id: null
          },
          {
            at: at(3),
            action: "conversation.deleted",
            cause: "cleanup",
            user_id: userId,
            conversation_id: conversationId,
            request_id: null
          }
        ])
        expect(lines.map((line) => line.annotations.audit)).toEqual([
          "conversation.created",
          "conversation.cross_user_access",
          "conversation.deleted"
        ])
      }).pipe(withStore()),
    60_000
  )

  it.live(
    "the table rejects UPDATE, DELETE and TRUNCATE",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const auditLog = yield* AuditLog.AuditLog
        const userId = `user-${randomUUID()}`
        yield* auditLog.record(entries(userId, randomUUID()))
        const before = yield* rowsOf(userId)
        expect(before).toHaveLength(3)
        for (const statement of [
          sql`UPDATE convoke_audit_log SET user_id = 'someone else' WHERE user_id = ${userId}`,
          sql`DELETE FROM convoke_audit_log WHERE user_id = ${userId}`,
          sql`TRUNCATE convoke_audit_log`
        ]) {
          const exit = yield* Effect.exit(statement)
          expect(Exit.isFailure(exit)).toBe(true)
          // SQLSTATE 42501, raised by the table's trigger.
          expect(JSON.stringify(exit)).toContain("convoke_audit_log_reject_change")
        }
        expect(yield* rowsOf(userId)).toEqual(before)
      }).pipe(withStore()),
    60_000
  )

  it.live(
    "a failed insert is logged, never returned to the caller",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const userId = `user-${randomUUID()}`
        // Every insert fails while the table is elsewhere.
        yield* sql`ALTER TABLE convoke_audit_log RENAME TO convoke_audit_log_elsewhere`
        const { lines } = yield* captureLogs(
          Effect.scoped(
            Effect.gen(function* () {
              const auditLog = yield* PgAuditLog.make()
              const exit = yield* Effect.exit(auditLog.record(entries(userId, randomUUID())))
              expect(Exit.isSuccess(exit)).toBe(true)
            })
          )
        ).pipe(
          Effect.ensuring(
            Effect.orDie(sql`ALTER TABLE convoke_audit_log_elsewhere RENAME TO convoke_audit_log`)
          )
        )
        expect(lines.map((line) => line.message)).toContainEqual(["audit entries could not be stored"])
        expect(lines.filter((line) => line.annotations.audit !== undefined)).toHaveLength(3)
        expect(yield* rowsOf(userId)).toEqual([])
      }).pipe(withStore()),
    60_000
  )

  it.live(
    "entries recorded at the same time are written by one INSERT",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const auditLog = yield* AuditLog.AuditLog
        const userId = `user-${randomUUID()}`
        yield* Effect.forEach(
          Array.from({ length: 50 }, () => entries(userId, randomUUID())),
          (batch) => auditLog.record(batch),
          { concurrency: "unbounded" }
        )
        expect(yield* rowsOf(userId)).toHaveLength(150)
        // Rows of one statement share its transaction id.
        const [statements] = yield* sql<{ readonly count: number }>`
          SELECT count(DISTINCT xmin::text)::int AS count FROM convoke_audit_log WHERE user_id = ${userId}`
        expect(statements!.count).toBe(1)
      }).pipe(withStore()),
    60_000
  )

  it.live(
    "closing the audit log writes the entries still waiting",
    () =>
      Effect.gen(function* () {
        const userId = `user-${randomUUID()}`
        yield* Effect.scoped(
          Effect.gen(function* () {
            const auditLog = yield* PgAuditLog.make({ batchWindow: "1 minute" })
            yield* Effect.forkDetach(auditLog.record(entries(userId, randomUUID())), {
              startImmediately: true
            })
          })
        )
        expect(yield* rowsOf(userId)).toHaveLength(3)
      }).pipe(withStore()),
    60_000
  )

  it.live(
    "an entry whose conversation id is not a UUID is logged and the others are stored",
    () =>
      Effect.gen(function* () {
        const auditLog = yield* AuditLog.AuditLog
        const userId = `user-${randomUUID()}`
        const [first, second] = entries(userId, randomUUID())
        const exit = yield* Effect.exit(
          auditLog.record([first!, { ...second!, conversationId: "not-a-uuid" }])
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        expect((yield* rowsOf(userId)).map((row) => row.action)).toEqual(["conversation.created"])
      }).pipe(withStore()),
    60_000
  )
}

describe("PgAuditLog on PGlite", () => {
  auditSuite(() => PgEmbedded.layer({ dataDir: "memory://" }))

  it.live(
    "layerEmbedded provides the table-backed audit log",
    () =>
      Effect.gen(function* () {
        const auditLog = yield* AuditLog.AuditLog
        expect(auditLog.record).not.toBe(AuditLog.logEntries)
        yield* ConversationStore.ConversationStore
      }).pipe(
        Effect.provide(
          Layer.merge(PgConversationStore.layerEmbedded({ dataDir: "memory://" }), Logger.layer([]))
        )
      ),
    60_000
  )
})

// Needs the PostgreSQL server of the test machines (see `reachable`).
describe.skipIf(!reachable)("PgAuditLog on PostgreSQL", () => {
  let database: PgTesting.TestDatabase | undefined
  beforeAll(async () => {
    database = await PgTesting.makeTestDatabase()
  })
  afterAll(async () => {
    await database?.drop()
  })
  const client = () => PgClient.layer({ url: Redacted.make(database!.url), maxConnections: 2 })

  auditSuite(client)

  it.live(
    "layerUrl writes the audit log on the store's own pool",
    () =>
      Effect.gen(function* () {
        const userId = `user-${randomUUID()}`
        const conversationId = randomUUID()
        yield* Effect.gen(function* () {
          const auditLog = yield* AuditLog.AuditLog
          yield* auditLog.record(entries(userId, conversationId))
        }).pipe(Effect.provide(Layer.merge(PgConversationStore.layerUrl(database!.url), Logger.layer([]))))
        const rows = yield* rowsOf(userId).pipe(Effect.provide(client()))
        expect(rows.map((row) => row.conversation_id)).toEqual([
          conversationId,
          conversationId,
          conversationId
        ])
      }),
    60_000
  )

  it.live(
    "PgAuditLog.layer applies the migrations on its own",
    () =>
      Effect.gen(function* () {
        const fresh = yield* PgTesting.scopedTestDatabase()
        const userId = `user-${randomUUID()}`
        yield* Effect.gen(function* () {
          const auditLog = yield* AuditLog.AuditLog
          yield* auditLog.record(entries(userId, randomUUID()))
          expect(yield* rowsOf(userId)).toHaveLength(3)
        }).pipe(
          Effect.provide(
            Layer.merge(
              PgAuditLog.layer().pipe(
                Layer.provideMerge(PgClient.layer({ url: Redacted.make(fresh.url), maxConnections: 1 }))
              ),
              Logger.layer([])
            )
          )
        )
      }),
    60_000
  )
})
