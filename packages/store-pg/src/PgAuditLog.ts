/**
 * Core's `AuditLog` on PostgreSQL: every entry becomes a row of the
 * append-only table `convoke_audit_log` as well as a structured log line.
 *
 * The table refuses `UPDATE`, `DELETE` and `TRUNCATE` with a trigger, so the
 * record cannot be rewritten through the application's connection. Recording
 * never fails the request that records: the log line is written first, and an
 * insert that fails (or outlasts `timeout`) is logged as a warning.
 *
 * Rows are written in batches (group commit): entries recorded while a write
 * is in flight (and within `batchWindow`, if set) go out together as one
 * `INSERT`. Under load that is one statement for many requests instead of one
 * each; when idle, an entry is written at once.
 * `record` resolves once its rows are written (or given up); closing the
 * layer's scope writes what is still waiting.
 *
 * `PgConversationStore.layerUrl` and `layerEmbedded` already provide it on the
 * store's connection pool; use `layer` when you build the store on your own
 * `SqlClient`.
 *
 * @since 0.1.0
 */
import { AuditLog, type ChatError, ConversationStore } from "@convoke/core"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as SqlClient from "effect/sql/SqlClient"
import { CurrentLanes } from "./internal/lanes.ts"
import { isUuid, storable } from "./internal/text.ts"
import * as PgMigrations from "./PgMigrations.ts"

/** The table the entries are written to. */
export const table = "convoke_audit_log"

/** Options of `make` and `layer`. */
export interface Options {
  /**
   * How long one insert may take before it is given up and logged (default 5
   * seconds), so an unreachable database never holds the caller.
   */
  readonly timeout?: Duration.Input | undefined
  /**
   * How long the first entry of a batch waits for others to join it (default
   * 0: a batch is what arrived while the previous write was in flight). A
   * window trades latency of the audit row for fewer, larger statements.
   */
  readonly batchWindow?: Duration.Input | undefined
  /**
   * Entries waiting to be written at most (default 10,000); past it, entries
   * are kept in the log line only and a warning says how many were not stored.
   */
  readonly maxPending?: number | undefined
}

/** Rows per `INSERT`: far below PostgreSQL's 65,535 bind parameters (6 per row). */
const MAX_BATCH_ROWS = 1_000

/** Entries waiting for a batch, and who waits for them. */
interface Waiting {
  readonly rows: ReadonlyArray<AuditLog.Entry>
  readonly written: Deferred.Deferred<void>
}

/** A row of `convoke_audit_log`, as read back with `SELECT *`. */
export interface Row {
  readonly id: string
  readonly at: Date
  readonly action: AuditLog.Entry["action"]
  readonly cause: string | null
  readonly user_id: string
  readonly conversation_id: string
  readonly request_id: string | null
}

/**
 * Builds the audit log on the `SqlClient` in context, assuming the table
 * exists; its batch writer lives as long as the scope. Use it when you run
 * `PgMigrations` yourself; otherwise use `layer`.
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const sql = yield* SqlClient.SqlClient
  const lanes = yield* CurrentLanes
  const timeout = Duration.fromInputUnsafe(options.timeout ?? Duration.seconds(5))

  const insert = (entries: ReadonlyArray<AuditLog.Entry>) => {
    const values = entries.map(
      (entry) =>
        sql`(${entry.at}::timestamptz, ${entry.action}::text, ${
          "cause" in entry ? entry.cause : null
        }::text, ${storable(entry.userId)}::text, ${entry.conversationId}::uuid, ${
          entry.requestId === undefined ? null : storable(entry.requestId)
        }::text)`
    )
    return lanes.background(
      sql`
      INSERT INTO convoke_audit_log (at, action, cause, user_id, conversation_id, request_id)
      VALUES ${sql.csv(values)}`.withoutTransform
    )
  }

  const batchWindow = Duration.fromInputUnsafe(options.batchWindow ?? Duration.zero)
  const maxPending = options.maxPending ?? 10_000
  const waiting: Array<Waiting> = []
  let pending = 0
  let closing = false
  /** Open while entries wait. */
  const work = Latch.makeUnsafe(false)

  const write = (batch: ReadonlyArray<Waiting>) => {
    const rows = batch.flatMap((entry) => entry.rows)
    return insert(rows).pipe(
      Effect.timeout(timeout),
      Effect.catchCause((cause) =>
        Effect.logWarning("audit entries could not be stored", cause).pipe(
          Effect.annotateLogs({ table, entries: rows.length })
        )
      ),
      Effect.ensuring(
        Effect.sync(() => {
          for (const entry of batch) Deferred.doneUnsafe(entry.written, Exit.void)
        })
      )
    )
  }

  /** Takes up to `MAX_BATCH_ROWS` rows' worth of waiting entries. */
  const takeBatch = (): Array<Waiting> => {
    let rows = 0
    let count = 0
    while (count < waiting.length && (count === 0 || rows + waiting[count]!.rows.length <= MAX_BATCH_ROWS)) {
      rows += waiting[count]!.rows.length
      count++
    }
    pending -= rows
    return waiting.splice(0, count)
  }

  const writer = Effect.gen(function* () {
    while (true) {
      yield* work.await
      if (!closing && Duration.isGreaterThan(batchWindow, Duration.zero)) yield* Effect.sleep(batchWindow)
      work.closeUnsafe()
      while (waiting.length > 0) yield* write(takeBatch())
      if (closing) return
    }
  })
  const writerFiber = yield* Effect.forkDetach(writer)
  // Closing writes what still waits, then stops the writer.
  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      closing = true
      work.openUnsafe()
      return Fiber.await(writerFiber).pipe(
        Effect.timeout(Duration.sum(timeout, Duration.seconds(1))),
        Effect.ignore,
        Effect.andThen(Fiber.interrupt(writerFiber)),
        // Whatever the writer did not get to is given up; nobody keeps waiting for it.
        Effect.andThen(
          Effect.sync(() => {
            for (const entry of waiting.splice(0)) Deferred.doneUnsafe(entry.written, Exit.void)
          })
        )
      )
    })
  )

  const record = (entries: ReadonlyArray<AuditLog.Entry>): Effect.Effect<void> =>
    Effect.gen(function* () {
      yield* AuditLog.logEntries(entries)
      // The column is a uuid; an entry naming anything else is kept in the log line only.
      const rows = entries.filter((entry) => isUuid(entry.conversationId))
      if (rows.length < entries.length) {
        yield* Effect.logWarning("audit entries without a UUID conversation id were not stored").pipe(
          Effect.annotateLogs({ skipped: entries.length - rows.length })
        )
      }
      if (rows.length === 0) return
      if (closing || pending + rows.length > maxPending) {
        return yield* Effect.logWarning(
          closing
            ? "audit entries were not stored: the audit log is closing"
            : "audit entries were not stored: too many are waiting"
        ).pipe(Effect.annotateLogs({ table, entries: rows.length, waiting: pending }))
      }
      const written = Deferred.makeUnsafe<void>()
      waiting.push({ rows, written })
      pending += rows.length
      work.openUnsafe()
      yield* Deferred.await(written)
    })

  return AuditLog.AuditLog.of({ record })
})

/**
 * Core's `AuditLog` writing to `convoke_audit_log` through the `SqlClient` in
 * context, after applying the migrations. Use it beside
 * `PgConversationStore.layer` on your own client.
 */
export const layer = (
  options: Options = {}
): Layer.Layer<never, ChatError.StoreUnavailable, SqlClient.SqlClient> =>
  Layer.effect(
    AuditLog.AuditLog,
    Effect.andThen(PgMigrations.run.pipe(Effect.mapError(ConversationStore.unavailable)), make(options))
  )
