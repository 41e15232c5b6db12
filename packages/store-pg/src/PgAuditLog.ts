/**
 * Core's `AuditLog` on PostgreSQL: every entry becomes a row of the
 * append-only table `convoke_audit_log` as well as a structured log line.
 *
 * The table refuses `UPDATE`, `DELETE` and `TRUNCATE` with a trigger, so the
 * record cannot be rewritten through the application's connection. Recording
 * never fails the request that records: the log line is written first, and an
 * insert that fails (or outlasts `timeout`) is logged as a warning.
 *
 * `PgConversationStore.layerUrl` and `layerEmbedded` already provide it on the
 * store's connection pool; use `layer` when you build the store on your own
 * `SqlClient`.
 *
 * @since 0.1.0
 */
import { AuditLog, type ChatError, ConversationStore } from "@convoke/core"
import { Cause, Duration, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
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
 * exists. Use it when you run `PgMigrations` yourself; otherwise use `layer`.
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const sql = yield* SqlClient.SqlClient
  const timeout = options.timeout ?? Duration.seconds(5)

  const insert = (entries: ReadonlyArray<AuditLog.Entry>) => {
    const values = entries.map(
      (entry) =>
        sql`(${entry.at}::timestamptz, ${entry.action}::text, ${
          "cause" in entry ? entry.cause : null
        }::text, ${storable(entry.userId)}::text, ${entry.conversationId}::uuid, ${
          entry.requestId === undefined ? null : storable(entry.requestId)
        }::text)`
    )
    return sql`
      INSERT INTO convoke_audit_log (at, action, cause, user_id, conversation_id, request_id)
      VALUES ${sql.csv(values)}`.withoutTransform
  }

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
      yield* insert(rows).pipe(
        Effect.timeout(timeout),
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.interrupt
            : Effect.logWarning("audit entries could not be stored", cause).pipe(
                Effect.annotateLogs({ table, entries: rows.length })
              )
        )
      )
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
