/**
 * Writes that could not reach the store yet, kept in order and retried until
 * they land — the reason a stream can start on a temporary conversation id
 * while the database is down, and nothing of it is lost.
 *
 * Entries are drained first in, first out by one background fiber, with
 * exponential backoff while the store is unavailable. Every write is
 * idempotent (same conversation id, same message ids), so an entry retried
 * after a write that did commit does no harm. While a conversation has
 * entries waiting, all of its writes go through the outbox, so its messages
 * keep their order.
 *
 * `OutboxStore` puts the outbox in front of a `ConversationStore`, so the
 * code that stores messages never needs to know whether the store is up.
 *
 * Where the entries are kept is the `OutboxPersistence` in context:
 *
 * - in memory by default: entries still waiting when the process stops are
 *   retried until the shutdown deadline, then logged (with their ids, never
 *   their content) and lost, as they are on a crash;
 * - in a journal file (`OutboxJournal` from `@convoke/core/node`): an entry
 *   counts as queued once it is on disk, and a restart replays what was
 *   still waiting;
 * - in Redis (`OutboxRedis`): any instance sharing the key prefix writes
 *   what another queued, after a crash or while that one cannot reach the
 *   store.
 *
 * The outbox keeps a view of what waits — what it queued, what it found at
 * start and, with Redis, what other instances queued — so reads see queued
 * writes (`held`, `pendingMessages`). An entry that cannot be persisted is
 * not queued: `enqueue` answers `false`, as when the outbox is full.
 *
 * Each user may hold at most a share of the capacity (`userCapacity`, a
 * tenth of it by default), counted over every entry the outbox sees, so one
 * user writing fast during an outage cannot fill it for everyone: past their
 * share, their writes are refused as when the outbox is full, and other users
 * are not affected.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import { AuditLog } from "./AuditLog.ts"
import { ChatHooks } from "./ChatHooks.ts"
import { type Conversation, ConversationStore, type Message, type NewMessage } from "./ConversationStore.ts"
import * as Deadline from "./Deadline.ts"
import { type Changes, OutboxPersistence, type Stored } from "./OutboxPersistence.ts"

/** One write waiting for the store. */
export type Entry =
  | {
      readonly _tag: "Create"
      readonly conversation: Conversation
      /** Messages stored with it, in the same write (the user message of its first turn). */
      readonly messages?: ReadonlyArray<NewMessage> | undefined
      readonly requestId?: string | undefined
    }
  | {
      readonly _tag: "Append"
      readonly userId: string
      readonly conversationId: string
      readonly messages: ReadonlyArray<NewMessage>
    }

/** What the outbox has done so far. */
export interface Stats {
  /** Entries waiting now. */
  readonly pending: number
  /** Entries written since start. */
  readonly drained: number
  /** Entries given up on: the outbox was full, could not persist them, or the store refused them. */
  readonly dropped: number
  /** Entries found waiting in the persistence at start (a journal replayed, Redis read). */
  readonly recovered: number
  /** Records of the persistence that could not be read (a torn or corrupt journal tail), skipped. */
  readonly skipped: number
}

/** Options of the outbox. */
export interface Options {
  /** Most entries kept at once (default 10,000); beyond it new entries are dropped. */
  readonly capacity?: number | undefined
  /**
   * Most entries one user may have waiting at once (default a tenth of the
   * capacity, at least 2: a turn's conversation and its reply); beyond it
   * that user's new entries are dropped. `0` leaves users unbounded but by
   * the capacity.
   */
  readonly userCapacity?: number | undefined
  /**
   * Longest wait for one store write, or one call to the persistence, before
   * it counts as failed (default 2 s).
   */
  readonly attemptTimeout?: Duration.Input | undefined
  /** Longest pause between retries while the store is down (default 5 s). */
  readonly maxBackoff?: Duration.Input | undefined
}

/** The outbox's operations. */
export interface Service {
  /** Queues an entry; `false` when the outbox is full and the entry was dropped. */
  readonly enqueue: (entry: Entry) => Effect.Effect<boolean>
  /** Whether there is room, within the user's share, for a new temporary conversation and its messages. */
  readonly hasRoom: (userId: string) => boolean
  /** The conversation, when it is waiting in the outbox for this user. */
  readonly held: (userId: string, conversationId: string) => Conversation | undefined
  /** Whether writes to the conversation must go through the outbox to keep their order. */
  readonly holds: (conversationId: string) => boolean
  /** Messages of the user's conversation that are still waiting, oldest first. */
  readonly pendingMessages: (userId: string, conversationId: string) => ReadonlyArray<Message>
  readonly stats: () => Stats
  /** Resolves once nothing is waiting (or at once when nothing is). */
  readonly drained: Effect.Effect<void>
  /**
   * `false` from the outbox's first failed write during which the store
   * answered nothing else, until its next successful one: the store is known
   * to be down, so new streams need not wait for it.
   */
  readonly storeAvailable: () => boolean
  /**
   * Counts a call the store answered, after `millis` when timed: a store that
   * answers is slow at worst, not down.
   */
  readonly storeAnswered: (millis?: number) => void
  /** How many calls the store has answered so far: a count that grows while the store makes progress. */
  readonly storeAnswers: () => number
  /** How long the store has lately taken to answer, in milliseconds (a moving average; 0 before any). */
  readonly storeLatency: () => number
}

/** A store is taken for down after this many times its recent latency without an answer (and at least the budget). */
const LATENCY_MULTIPLE = 4

/**
 * A deadline for a call on the store that tells a busy store from a down
 * one: the call is given up once the store has answered nothing else for
 * `budget` (or four times its recent latency, when that is longer), or after
 * `ceiling` in all. While other calls keep completing, it waits its turn.
 */
export const whileStoreAnswers = (
  outbox: Service,
  options: { readonly budget: Duration.Duration; readonly ceiling: Duration.Duration }
) => {
  const budgetMillis = Duration.toMillis(options.budget)
  const ceilingMillis = Math.max(budgetMillis, Duration.toMillis(options.ceiling))
  return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Cause.TimeoutError, R> =>
    Effect.suspend(() =>
      effect.pipe(
        Deadline.withinWhileProgressing({
          slice: Duration.millis(
            Math.min(ceilingMillis, Math.max(budgetMillis, LATENCY_MULTIPLE * outbox.storeLatency()))
          ),
          ceiling: Duration.millis(ceilingMillis),
          progress: outbox.storeAnswers
        })
      )
    )
}

/** The outbox service. */
export class ConversationOutbox extends Context.Service<ConversationOutbox, Service>()(
  "@convoke/core/ConversationOutbox"
) {}

/** A user's share of `capacity` when none is given: a tenth of it, at least 2 (a turn's two writes). */
export const defaultUserCapacity = (capacity: number): number => Math.max(2, Math.ceil(capacity / 10))

/** Builds the outbox and starts its drain fiber in the current scope. */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const store = yield* ConversationStore
  const audit = yield* AuditLog
  const hooks = yield* ChatHooks
  const capacity = options.capacity ?? 10_000
  const userCapacity = options.userCapacity ?? defaultUserCapacity(capacity)
  const attemptTimeout = Duration.fromInputUnsafe(options.attemptTimeout ?? Duration.seconds(2))
  const maxBackoff = Duration.toMillis(Duration.fromInputUnsafe(options.maxBackoff ?? Duration.seconds(5)))

  const persistence = yield* OutboxPersistence
  const shared = persistence.pollInterval !== undefined
  const pollInterval = persistence.pollInterval ?? Duration.millis(50)

  // The view of what waits, oldest first: what this process queued, what it
  // found at start and, with a shared persistence, what others queued.
  const waiting: Array<Stored> = []
  const known = new Set<number>()
  const conversations = new Map<string, { conversation?: Conversation; entries: number }>()
  // Entries numbered below this one are known to be written (shared persistences).
  let doneBelow = 0
  // Appends in flight count against the capacity.
  let appending = 0
  // Entries waiting or being appended, per user: each holds at most `userCapacity`.
  const perUser = new Map<string, number>()
  const count = (userId: string, change: number) => {
    const next = (perUser.get(userId) ?? 0) + change
    if (next <= 0) perUser.delete(userId)
    else perUser.set(userId, next)
  }
  const userHasRoom = (userId: string) => userCapacity === 0 || (perUser.get(userId) ?? 0) < userCapacity
  let drainedCount = 0
  let droppedCount = 0
  let recoveredCount = 0
  let skippedCount = 0
  let storeAvailable = true
  let storeAnswers = 0
  let storeLatency = 0
  let persistenceAvailable = true
  const work = Latch.makeUnsafe(false)
  const idle = Latch.makeUnsafe(true)

  const conversationIdOf = (entry: Entry) =>
    entry._tag === "Create" ? entry.conversation.id : entry.conversationId

  const userIdOf = (entry: Entry) => (entry._tag === "Create" ? entry.conversation.userId : entry.userId)

  const add = (stored: Stored) => {
    if (stored.sequence < doneBelow || known.has(stored.sequence)) return
    known.add(stored.sequence)
    // In order of sequence; appends that finish together may arrive out of it.
    let index = waiting.length
    while (index > 0 && waiting[index - 1]!.sequence > stored.sequence) index--
    waiting.splice(index, 0, stored)
    const { entry } = stored
    count(userIdOf(entry), 1)
    const id = conversationIdOf(entry)
    const held = conversations.get(id) ?? { entries: 0 }
    held.entries++
    if (entry._tag === "Create") held.conversation = entry.conversation
    conversations.set(id, held)
    idle.closeUnsafe()
    work.openUnsafe()
  }

  const settle = (sequence: number) => {
    if (!known.delete(sequence)) return
    const index = waiting.findIndex((stored) => stored.sequence === sequence)
    const [{ entry }] = waiting.splice(index, 1) as [Stored]
    count(userIdOf(entry), -1)
    const id = conversationIdOf(entry)
    const held = conversations.get(id)
    if (held !== undefined && --held.entries === 0) conversations.delete(id)
  }

  /** Takes in what a poll found: new entries, and those another process wrote. */
  const apply = (changes: Changes) => {
    skippedCount += changes.skipped
    doneBelow = Math.max(doneBelow, changes.doneBelow)
    while (waiting.length > 0 && waiting[0]!.sequence < doneBelow) settle(waiting[0]!.sequence)
    for (const stored of changes.added) add(stored)
  }

  /** Logs the persistence failing, or coming back, once per change rather than per attempt. */
  const persistenceOutcome = <A>(result: Result.Result<A, unknown>, doing: string) =>
    Effect.suspend(() => {
      const ok = Result.isSuccess(result)
      if (ok === persistenceAvailable) return Effect.void
      persistenceAvailable = ok
      return (
        ok
          ? Effect.logInfo("The outbox's persistence answers again")
          : Effect.logError(`The outbox's persistence failed while ${doing}`, result.failure)
      ).pipe(Effect.annotateLogs({ persistence: persistence.name }))
    })

  const timed = <A, E>(effect: Effect.Effect<A, E>) => Effect.result(Deadline.within(attemptTimeout)(effect))
  const release = Effect.asVoid(timed(persistence.release))

  const enqueue = (entry: Entry): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      if (waiting.length + appending >= capacity) {
        droppedCount++
        return Effect.logError("The outbox is full; a write was dropped").pipe(
          Effect.annotateLogs({ conversationId: conversationIdOf(entry), capacity }),
          Effect.as(false)
        )
      }
      const userId = userIdOf(entry)
      if (!userHasRoom(userId)) {
        droppedCount++
        return Effect.logError("A user's share of the outbox is full; a write was dropped").pipe(
          Effect.annotateLogs({ conversationId: conversationIdOf(entry), userId, userCapacity }),
          Effect.as(false)
        )
      }
      appending++
      count(userId, 1)
      return Effect.flatMap(timed(persistence.append(entry)), (result) => {
        appending--
        count(userId, -1)
        if (Result.isSuccess(result)) {
          add({ sequence: result.success, entry })
          return Effect.succeed(true)
        }
        droppedCount++
        // Not on disk (or in Redis): the caller is told it was not queued rather than
        // promised a write a crash would lose. An append that lands after its deadline is
        // written all the same (at the next start, or once a poll finds it): harmless.
        return Effect.logError("The outbox could not persist a write; it was dropped", result.failure).pipe(
          Effect.annotateLogs({ conversationId: conversationIdOf(entry), persistence: persistence.name }),
          Effect.as(false)
        )
      })
    }).pipe(
      // Once persisted, an entry must reach the view, or it would wait unseen until the next start.
      Effect.uninterruptible
    )

  /** Writes one entry; `true` when done (written or given up), `false` to retry later. */
  const write = (entry: Entry): Effect.Effect<boolean> => {
    const attempt: Effect.Effect<boolean, unknown> =
      entry._tag === "Create"
        ? store
            .create({
              id: entry.conversation.id,
              userId: entry.conversation.userId,
              title: entry.conversation.title,
              now: entry.conversation.createdAt,
              messages: entry.messages
            })
            .pipe(
              Effect.tap(() =>
                hooks.conversationResolved({
                  userId: entry.conversation.userId,
                  requestId: entry.requestId,
                  stream: true,
                  conversationId: entry.conversation.id,
                  source: "reconciled",
                  created: true,
                  durationMillis: 0
                })
              ),
              Effect.tap(() =>
                Effect.flatMap(Clock.currentTimeMillis, (millis) =>
                  audit.record([
                    {
                      action: "conversation.created",
                      cause: "reconciled",
                      userId: entry.conversation.userId,
                      conversationId: entry.conversation.id,
                      requestId: entry.requestId,
                      at: new Date(millis)
                    }
                  ])
                )
              ),
              Effect.as(true)
            )
        : store
            .append({ userId: entry.userId, conversationId: entry.conversationId, messages: entry.messages })
            .pipe(
              Effect.flatMap((owned) =>
                owned
                  ? Effect.succeed(true)
                  : Effect.logError(
                      "The store refused queued messages: the conversation does not exist"
                    ).pipe(
                      Effect.annotateLogs({ conversationId: entry.conversationId }),
                      Effect.andThen(
                        Effect.sync(() => {
                          droppedCount++
                        })
                      ),
                      Effect.as(true)
                    )
              )
            )
    return attempt.pipe(
      Deadline.within(attemptTimeout),
      Effect.catchCause(() => Effect.succeed(false))
    )
  }

  /** Takes in what the persistence has that this process has not seen, at most once per poll interval while busy. */
  let polledAt = 0
  const poll = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    waiting.length > 0 && now - polledAt < Duration.toMillis(pollInterval)
      ? Effect.void
      : Effect.flatMap(timed(persistence.poll), (result) => {
          polledAt = now
          if (Result.isSuccess(result)) apply(result.success)
          return persistenceOutcome(result, "reading entries")
        })
  )

  // Local persistences wake on new entries; shared ones also look for what other processes queued.
  const waitForWork = shared ? Effect.raceFirst(work.await, Effect.sleep(pollInterval)) : work.await

  const drainLoop = Effect.gen(function* () {
    let backoff = 50
    const retryLater = Effect.suspend(() => {
      const pause = backoff
      backoff = Math.min(backoff * 2, maxBackoff)
      return Effect.sleep(Duration.millis(pause))
    })
    while (true) {
      yield* waitForWork
      if (shared) yield* poll
      if (waiting.length === 0) {
        work.closeUnsafe()
        idle.openUnsafe()
        continue
      }
      const turn = yield* timed(persistence.next(waiting[0]))
      yield* persistenceOutcome(turn, "choosing the next entry")
      if (Result.isFailure(turn)) {
        yield* retryLater
        continue
      }
      const stored = turn.success
      if (stored === undefined) {
        // Another process holds the turn to write; its progress shows in the next poll.
        yield* Effect.sleep(pollInterval)
        continue
      }
      const answersBefore = storeAnswers
      if (yield* write(stored.entry)) {
        // Were the record of it lost, the entry would be written again: harmless, every write is idempotent.
        yield* persistenceOutcome(yield* timed(persistence.complete(stored.sequence)), "recording a write")
        settle(stored.sequence)
        drainedCount++
        storeAnswers++
        storeAvailable = true
        backoff = 50
      } else {
        // A write that failed or timed out while the store answered other
        // calls says the store is busy (or this entry is the problem), not
        // that it is down: new streams keep trying it.
        if (storeAnswers === answersBefore) storeAvailable = false
        yield* release
        yield* retryLater
      }
    }
  })

  const found = yield* timed(persistence.poll)
  yield* persistenceOutcome(found, "reading entries at start")
  if (Result.isSuccess(found)) {
    apply(found.success)
    recoveredCount = found.success.added.length
    if (recoveredCount > 0 || found.success.skipped > 0) {
      const ids = [...new Set(found.success.added.map((stored) => conversationIdOf(stored.entry)))]
      yield* Effect.logWarning(
        "Writes queued before this start were found in the outbox; they are written once the store answers"
      ).pipe(
        Effect.annotateLogs({
          persistence: persistence.name,
          recovered: recoveredCount,
          skipped: found.success.skipped,
          conversations: ids.length,
          // Ids only, never content; a long list is cut short.
          conversationIds: ids.slice(0, 100).join(",") + (ids.length > 100 ? ",…" : "")
        })
      )
    }
  }

  // Registered before the drain fiber starts, so it runs once that fiber has stopped.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      yield* release
      if (shared) {
        // Others may have written entries since the last poll: the log below says what still waits.
        polledAt = 0
        yield* poll
      }
      if (waiting.length === 0) return
      const log = persistence.durable
        ? Effect.logWarning(
            "Stopping with writes still in the outbox; they are kept and written after a restart (or by another instance sharing them)"
          )
        : Effect.logError("Stopping with writes still in the outbox; they are lost")
      yield* log.pipe(
        Effect.annotateLogs({
          persistence: persistence.name,
          pending: waiting.length,
          conversations: [...conversations.keys()].join(",")
        })
      )
    })
  )
  yield* Effect.forkScoped(drainLoop)

  return ConversationOutbox.of({
    enqueue,
    hasRoom: (userId) => waiting.length + appending < capacity && userHasRoom(userId),
    held: (userId, conversationId) => {
      const conversation = conversations.get(conversationId)?.conversation
      return conversation !== undefined && conversation.userId === userId ? conversation : undefined
    },
    holds: (conversationId) => conversations.has(conversationId),
    pendingMessages: (userId, conversationId) =>
      waiting.flatMap(({ entry }) =>
        conversationIdOf(entry) === conversationId && userIdOf(entry) === userId
          ? (entry.messages ?? []).map((message) => ({ ...message, conversationId }))
          : []
      ),
    stats: () => ({
      pending: waiting.length,
      drained: drainedCount,
      dropped: droppedCount,
      recovered: recoveredCount,
      skipped: skippedCount
    }),
    drained: idle.await,
    storeAvailable: () => storeAvailable,
    storeAnswered: (millis) => {
      storeAnswers++
      // An average over roughly the last 20 answers: it follows a store that
      // slows down under load within a fraction of a second.
      if (millis !== undefined) storeLatency += (millis - storeLatency) / 20
    },
    storeAnswers: () => storeAnswers,
    storeLatency: () => storeLatency
  })
})

/**
 * The outbox as a layer; its drain fiber runs for the layer's lifetime. It
 * keeps its entries in the `OutboxPersistence` in context: in memory unless
 * a layer such as `OutboxJournal.layer` or `OutboxRedis.layer` provides one.
 */
export const layer = (options?: Options): Layer.Layer<ConversationOutbox, never, ConversationStore> =>
  Layer.effect(ConversationOutbox, make(options))
