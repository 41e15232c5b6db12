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
 * The outbox is bounded and lives in memory: entries still waiting when the
 * process stops are retried until the shutdown deadline, then logged (with
 * their ids, never their content) and lost. A crash while the store is down
 * loses them too.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Latch, Layer } from "effect"
import { AuditLog } from "./AuditLog.ts"
import { ChatHooks } from "./ChatHooks.ts"
import { type Conversation, ConversationStore, type Message, type NewMessage } from "./ConversationStore.ts"
import * as Deadline from "./Deadline.ts"

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
  /** Entries given up on: the outbox was full, or the store refused them. */
  readonly dropped: number
}

/** Options of the outbox. */
export interface Options {
  /** Most entries kept at once (default 10,000); beyond it new entries are dropped. */
  readonly capacity?: number | undefined
  /** Longest wait for one store write before it counts as failed (default 2 s). */
  readonly attemptTimeout?: Duration.Input | undefined
  /** Longest pause between retries while the store is down (default 5 s). */
  readonly maxBackoff?: Duration.Input | undefined
}

/** The outbox's operations. */
export interface Service {
  /** Queues an entry; `false` when the outbox is full and the entry was dropped. */
  readonly enqueue: (entry: Entry) => Effect.Effect<boolean>
  /** Whether there is room for a new temporary conversation and its messages. */
  readonly hasRoom: () => boolean
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
   * `false` from the outbox's first failed write until its next successful
   * one: the store is known to be down, so new streams need not wait for it.
   */
  readonly storeAvailable: () => boolean
}

/** The outbox service. */
export class ConversationOutbox extends Context.Service<ConversationOutbox, Service>()(
  "@convoke/core/ConversationOutbox"
) {}

/** Builds the outbox and starts its drain fiber in the current scope. */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const store = yield* ConversationStore
  const audit = yield* AuditLog
  const hooks = yield* ChatHooks
  const capacity = options.capacity ?? 10_000
  const attemptTimeout = Duration.fromInputUnsafe(options.attemptTimeout ?? Duration.seconds(2))
  const maxBackoff = Duration.toMillis(Duration.fromInputUnsafe(options.maxBackoff ?? Duration.seconds(5)))

  const queue: Array<Entry> = []
  const conversations = new Map<string, { conversation?: Conversation; entries: number }>()
  let drainedCount = 0
  let droppedCount = 0
  let storeAvailable = true
  const work = Latch.makeUnsafe(false)
  const idle = Latch.makeUnsafe(true)

  const conversationIdOf = (entry: Entry) =>
    entry._tag === "Create" ? entry.conversation.id : entry.conversationId

  const userIdOf = (entry: Entry) => (entry._tag === "Create" ? entry.conversation.userId : entry.userId)

  const settle = (entry: Entry) => {
    const id = conversationIdOf(entry)
    const held = conversations.get(id)
    if (held !== undefined && --held.entries === 0) conversations.delete(id)
  }

  const enqueue = (entry: Entry) =>
    Effect.sync(() => {
      if (queue.length >= capacity) {
        droppedCount++
        return false
      }
      queue.push(entry)
      const id = conversationIdOf(entry)
      const held = conversations.get(id) ?? { entries: 0 }
      held.entries++
      if (entry._tag === "Create") held.conversation = entry.conversation
      conversations.set(id, held)
      idle.closeUnsafe()
      work.openUnsafe()
      return true
    }).pipe(
      Effect.tap((queued) =>
        queued
          ? Effect.void
          : Effect.logError("The outbox is full; a write was dropped").pipe(
              Effect.annotateLogs({ conversationId: conversationIdOf(entry), capacity })
            )
      )
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

  const drainLoop = Effect.gen(function* () {
    let backoff = 50
    while (true) {
      yield* work.await
      const entry = queue[0]
      if (entry === undefined) {
        work.closeUnsafe()
        idle.openUnsafe()
        continue
      }
      if (yield* write(entry)) {
        queue.shift()
        settle(entry)
        drainedCount++
        storeAvailable = true
        backoff = 50
      } else {
        storeAvailable = false
        yield* Effect.sleep(Duration.millis(backoff))
        backoff = Math.min(backoff * 2, maxBackoff)
      }
    }
  })

  yield* Effect.forkScoped(drainLoop)
  yield* Effect.addFinalizer(() =>
    queue.length === 0
      ? Effect.void
      : Effect.logError("Stopping with writes still in the outbox; they are lost").pipe(
          Effect.annotateLogs({
            pending: queue.length,
            conversations: [...new Set(queue.map(conversationIdOf))].join(",")
          })
        )
  )

  return ConversationOutbox.of({
    enqueue,
    hasRoom: () => queue.length < capacity,
    held: (userId, conversationId) => {
      const conversation = conversations.get(conversationId)?.conversation
      return conversation !== undefined && conversation.userId === userId ? conversation : undefined
    },
    holds: (conversationId) => conversations.has(conversationId),
    pendingMessages: (userId, conversationId) =>
      queue.flatMap((entry) =>
        conversationIdOf(entry) === conversationId && userIdOf(entry) === userId
          ? (entry.messages ?? []).map((message) => ({ ...message, conversationId }))
          : []
      ),
    stats: () => ({ pending: queue.length, drained: drainedCount, dropped: droppedCount }),
    drained: idle.await,
    storeAvailable: () => storeAvailable
  })
})

/** The outbox as a layer; its drain fiber runs for the layer's lifetime. */
export const layer = (options?: Options): Layer.Layer<ConversationOutbox, never, ConversationStore> =>
  Layer.effect(ConversationOutbox, make(options))
