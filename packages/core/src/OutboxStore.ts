/**
 * A `ConversationStore` with the outbox in front of it: the store a chat turn
 * uses, so that storing a message never depends on the database being up.
 *
 * - `append` writes through to the store; when the store fails or takes
 *   longer than `ChatConfig.storeTimeout`, the messages wait in the outbox
 *   and are written, in order, once the store answers. While a conversation
 *   has writes waiting, every later write of it waits behind them, so its
 *   messages keep their order. Fails with `StoreUnavailable` only when the
 *   outbox is full, or the user's share of it is.
 * - `find` sees a conversation that waits in the outbox (a temporary id a
 *   client already holds) as its owner's, and `history` adds the messages
 *   still waiting to the stored ones.
 * - Everything else goes straight to the store.
 *
 * Every call the store answers on the chat path is counted and timed
 * (`ConversationOutbox.storeAnswers`, `storeLatency`): while that count
 * grows, the store is busy, not down, and a conversation's creation waits its
 * turn. While calls wait, the store's liveness check (`alive`), when it has
 * one, is asked every half budget and counts too: a database whose writes are
 * all held up (a lock, a disk stalling) still answers it, one that cannot be
 * reached does not.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { ChatConfig } from "./ChatConfig.ts"
import { StoreUnavailable } from "./ChatError.ts"
import { ConversationOutbox, type Entry, whileStoreAnswers } from "./ConversationOutbox.ts"
import { ConversationStore, type Message, type Service } from "./ConversationStore.ts"
import * as Deadline from "./Deadline.ts"

const full = new StoreUnavailable({ message: "The conversation store is unavailable" })

/**
 * Wraps store calls so that `alive` is asked every `intervalMillis` while any
 * of them waits, on one fiber in `scope` however many wait, and each answer
 * counts as the store's. Calls that end within an interval cost no query.
 */
const livenessProbe = (
  alive: Effect.Effect<void, unknown> | undefined,
  options: {
    readonly intervalMillis: number
    readonly answered: () => void
    readonly scope: Scope.Scope
  }
) => {
  if (alive === undefined) return <A, E, R>(call: Effect.Effect<A, E, R>) => call
  let waiting = 0
  let probing = false
  const probe: Effect.Effect<void> = Effect.suspend(() => {
    // Decided and cleared in one step, so a call that starts waiting now starts a new probe.
    if (waiting === 0) {
      probing = false
      return Effect.void
    }
    return Effect.sleep(Duration.millis(options.intervalMillis)).pipe(
      Effect.andThen(Effect.suspend(() => (waiting === 0 ? Effect.void : alive))),
      Effect.andThen(
        Effect.sync(() => {
          if (waiting > 0) options.answered()
        })
      ),
      Effect.ignore,
      Effect.andThen(probe)
    )
  })
  const start = Effect.suspend(() => {
    waiting++
    if (probing) return Effect.void
    probing = true
    return Effect.asVoid(
      Effect.forkIn(
        Effect.ensuring(
          probe,
          Effect.sync(() => {
            probing = false
          })
        ),
        options.scope
      )
    )
  })
  const stop = Effect.sync(() => {
    waiting--
  })
  return <A, E, R>(call: Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      start,
      () => call,
      () => stop
    )
}

/** Decorates `store` with `outbox`. */
export const make = Effect.fnUntraced(function* (store: Service) {
  const outbox = yield* ConversationOutbox
  const config = yield* ChatConfig
  const clock = yield* Clock.Clock
  const watched = livenessProbe(store.alive, {
    // Two checks per budget: one answers within any silence the creation deadline allows.
    intervalMillis: Math.max(1, Duration.toMillis(config.creationBudget) / 2),
    answered: () => outbox.storeAnswered(),
    scope: yield* Effect.scope
  })

  const queue = (entry: Entry) =>
    Effect.flatMap(outbox.enqueue(entry), (queued) => (queued ? Effect.succeed(true) : Effect.fail(full)))

  const historyDeadline = whileStoreAnswers(outbox, {
    budget: config.creationBudget,
    ceiling: config.storeTimeout
  })
  const answered = <A, E, R>(call: Effect.Effect<A, E, R>) =>
    watched(
      Effect.suspend(() => {
        const started = clock.currentTimeMillisUnsafe()
        return Effect.map(call, (value) => {
          outbox.storeAnswered(clock.currentTimeMillisUnsafe() - started)
          return value
        })
      })
    )

  const decorated: Service = {
    ...store,
    create: (input) => answered(store.create(input)),
    exists: (id) => answered(store.exists(id)),
    append: (input) => {
      const entry = { _tag: "Append", ...input } as const
      if (outbox.holds(input.conversationId)) return queue(entry)
      return answered(store.append(input)).pipe(
        Deadline.within(config.storeTimeout),
        Effect.catch(() => queue(entry))
      )
    },
    find: (input) => {
      const held = outbox.held(input.userId, input.id)
      return held === undefined ? answered(store.find(input)) : Effect.succeed(Option.some(held))
    },
    history: (input) => {
      if (!outbox.holds(input.conversationId)) return answered(store.history(input))
      // What reached the store, if it answers in time, then what still waits.
      return watched(store.history(input)).pipe(
        // A busy store is waited for: what reached it is this conversation's history.
        historyDeadline,
        Effect.orElseSucceed((): ReadonlyArray<Message> => []),
        Effect.map((stored) => [...stored, ...outbox.pendingMessages(input.userId, input.conversationId)])
      )
    }
  }
  return decorated
})

/** Puts the outbox in front of the `ConversationStore` in context. */
export const layer: Layer.Layer<ConversationStore, never, ConversationStore | ConversationOutbox> =
  Layer.effect(ConversationStore, Effect.flatMap(ConversationStore, make))
