/**
 * Where the outbox keeps the writes it holds, so that what it queued while
 * the store was down survives a crash of the process that queued it.
 *
 * - `layerMemory` (the default): in the process; entries still waiting
 *   when it stops or crashes are lost.
 * - `OutboxJournal.layer` (`@convoke/core/node`): an append-only file,
 *   written and fsync'd before an entry counts as queued, replayed at start.
 * - `OutboxRedis.layer`: in Redis, where every instance that shares the key
 *   prefix sees the entries and any of them may write them (one at a time,
 *   under a lease, oldest first).
 *
 * A persistence stores entries, numbers them in the order they are to be
 * written, and says which one to write next. The outbox keeps its own view of
 * what waits (to answer reads with queued writes) and does the writing; every
 * write is idempotent, so an entry written twice — replayed after a crash
 * that came between the write and its record, or written by a second
 * instance after a lease lapsed — does no harm.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { Entry } from "./ConversationOutbox.ts"

/** An entry as persisted: its place in the order, and the write. */
export interface Stored {
  readonly sequence: number
  readonly entry: Entry
}

/** What a `poll` found. */
export interface Changes {
  /** Entries not seen before by this process, oldest first (at start: everything waiting). */
  readonly added: ReadonlyArray<Stored>
  /** Every entry numbered below this one is written (shared persistences; `0` elsewhere). */
  readonly doneBelow: number
  /** Records that could not be read (a torn or corrupt journal tail, an undecodable Redis entry). */
  readonly skipped: number
}

/** The persistence failed: a file or Redis error. */
export class OutboxPersistenceError extends Schema.TaggedError<OutboxPersistenceError>()(
  "OutboxPersistenceError",
  {
    message: Schema.String,
    cause: Schema.optional(Schema.Defect())
  }
) {}

/** A persistence's operations, as the outbox uses them. */
export interface Service {
  /** For logs and banners: `memory`, `journal`, `redis`. */
  readonly name: string
  /** Whether entries outlive the process. */
  readonly durable: boolean
  /**
   * How often to `poll` for entries other processes queued or wrote: set by
   * shared persistences; `undefined` polls once, at start.
   */
  readonly pollInterval: Duration.Duration | undefined
  /** Entries not seen before; the first call, at start, returns everything waiting. */
  readonly poll: Effect.Effect<Changes, OutboxPersistenceError>
  /**
   * Stores an entry and returns its sequence number; once it succeeds, the
   * entry outlives the process (when `durable`).
   */
  readonly append: (entry: Entry) => Effect.Effect<number, OutboxPersistenceError>
  /**
   * The entry to write now. A local persistence answers with `oldest`, the
   * outbox's own oldest entry; a shared one claims the turn to write (a
   * lease) and answers with its own oldest entry, or `undefined` while
   * another process holds the turn.
   */
  readonly next: (oldest: Stored | undefined) => Effect.Effect<Stored | undefined, OutboxPersistenceError>
  /** Records that the entry `next` gave was written (or given up on): it is not handed out again. */
  readonly complete: (sequence: number) => Effect.Effect<void, OutboxPersistenceError>
  /** Gives up the turn to write after a failed write, so another process may try. */
  readonly release: Effect.Effect<void>
}

/** Keeps entries in the process only: what the outbox did before it could persist. */
export const makeMemory = (): Service => {
  let sequence = 0
  const none: Changes = { added: [], doneBelow: 0, skipped: 0 }
  return {
    name: "memory",
    durable: false,
    pollInterval: undefined,
    poll: Effect.succeed(none),
    append: () => Effect.sync(() => ++sequence),
    next: (oldest) => Effect.succeed(oldest),
    complete: () => Effect.void,
    release: Effect.void
  }
}

/** The outbox's persistence; in memory unless a layer provides another. */
export const OutboxPersistence = Context.Reference<Service>("@convoke/core/OutboxPersistence", {
  defaultValue: makeMemory
})

/** The in-memory persistence, for saying so explicitly. */
export const layerMemory = Layer.sync(OutboxPersistence, makeMemory)

// Entries hold dates (a conversation's `createdAt`, a message's) that JSON
// would turn into strings. They are written as `{"$date": epochMillis}` and
// read back as `Date`s, wherever they sit, so the codec need not restate the
// shape of an entry (or of a message's metadata).
const DATE = "$date"

/**
 * An entry (or a record holding entries) as text, for a journal line or a
 * Redis value; for persistences.
 */
export const encode = (value: unknown): string =>
  JSON.stringify(value, function (this: Record<string, unknown>, key, replaced) {
    const raw = this[key]
    return raw instanceof Date ? { [DATE]: raw.getTime() } : replaced
  })

const revive = (_key: string, value: unknown): unknown => {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const millis = (value as Record<string, unknown>)[DATE]
    if (typeof millis === "number" && Object.keys(value).length === 1) return new Date(millis)
  }
  return value
}

/** Reads what `encode` wrote, dates as `Date`s; `undefined` when the text is not JSON. */
export const decode = (text: string): unknown => {
  try {
    return JSON.parse(text, revive)
  } catch {
    return undefined
  }
}

/** Whether a decoded value has an entry's shape (its tag and ids); the rest is as it was written. */
export const isEntry = (value: unknown): value is Entry => {
  if (typeof value !== "object" || value === null) return false
  const entry = value as Record<string, any>
  if (entry._tag === "Create")
    return typeof entry.conversation?.id === "string" && entry.conversation.createdAt instanceof Date
  if (entry._tag === "Append")
    return (
      typeof entry.conversationId === "string" &&
      typeof entry.userId === "string" &&
      Array.isArray(entry.messages)
    )
  return false
}
