/**
 * An append-only record of what happened to conversations: every creation
 * with its cause, every attempt to reach another user's conversation, every
 * deletion. Each entry is also a structured log line.
 *
 * `@convoke/store-pg` provides a layer that also writes the entries to a
 * table; the default only logs.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"

/**
 * Why a conversation was created: `absent` (no id given), `new` (explicit
 * `"new"`), `invalid_id` (malformed), `unknown_id` (well-formed but not the
 * caller's), `temporary` (the store was unavailable; the id is queued), or
 * `reconciled` (a temporary conversation reached the store).
 */
export type CreationCause = "absent" | "new" | "invalid_id" | "unknown_id" | "temporary" | "reconciled"

/** One audit entry. */
export type Entry =
  | {
      readonly action: "conversation.created"
      readonly cause: CreationCause
      readonly userId: string
      readonly conversationId: string
      readonly requestId?: string | undefined
      readonly at: Date
    }
  | {
      /** A user named a conversation that exists but belongs to someone else. */
      readonly action: "conversation.cross_user_access"
      readonly userId: string
      readonly conversationId: string
      readonly requestId?: string | undefined
      readonly at: Date
    }
  | {
      readonly action: "conversation.deleted"
      /** `user` (through the API) or `cleanup` (abandoned). */
      readonly cause: "user" | "cleanup"
      readonly userId: string
      readonly conversationId: string
      readonly requestId?: string | undefined
      readonly at: Date
    }

/** The audit log's operations. */
export interface Service {
  /** Records entries; never fails (a failure to record is logged). */
  readonly record: (entries: ReadonlyArray<Entry>) => Effect.Effect<void>
}

/** Writes each entry as one structured log line (nothing is built while Info logs are off). */
export const logEntries = (entries: ReadonlyArray<Entry>): Effect.Effect<void> =>
  Effect.flatMap(LogLevel.isEnabled("Info"), (enabled) =>
    enabled
      ? Effect.forEach(
          entries,
          (entry) =>
            Effect.logInfo("audit").pipe(
              Effect.annotateLogs({
                audit: entry.action,
                ...("cause" in entry ? { cause: entry.cause } : {}),
                userId: entry.userId,
                conversationId: entry.conversationId,
                ...(entry.requestId === undefined ? {} : { requestId: entry.requestId }),
                at: entry.at.toISOString()
              })
            ),
          { discard: true }
        )
      : Effect.void
  )

/** The audit log; by default entries are structured log lines only. */
export const AuditLog = Context.Reference<Service>("@convoke/core/AuditLog", {
  defaultValue: () => ({ record: logEntries })
})

/** Keeps entries in an array as well as logging them, for tests. */
export const makeMemory = (): Service & { readonly entries: Array<Entry> } => {
  const entries: Array<Entry> = []
  return {
    entries,
    record: (added) =>
      Effect.andThen(
        Effect.sync(() => entries.push(...added)),
        logEntries(added)
      )
  }
}
