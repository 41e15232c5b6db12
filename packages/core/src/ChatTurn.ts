/**
 * One chat turn, once its conversation is resolved: the history, the model's
 * reply as text deltas, and the reply stored however the turn ends.
 *
 * A resumed conversation's history is read while this turn's user message is
 * stored (a new conversation was stored with it). The model's text goes to
 * the caller as it comes (`onText` may wait). The reply is stored when the
 * turn ends: `complete`, `cancelled` (stopped, or its client went away),
 * `interrupted` (shutdown) or `error` (model or store failure).
 * Messages go through the store in context, which has the outbox in front of
 * it (`OutboxStore`), so a store that fails mid-turn loses nothing.
 *
 * Turns register while they run, so `shutdown` can end them all.
 *
 * @since 0.3.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import { type ModelError, ServerShutdown, type StoreUnavailable } from "./ChatError.ts"
import { ChatHooks, type Outcome, type TurnContext } from "./ChatHooks.ts"
import type { Resolution } from "./ConversationResolver.ts"
import { ConversationStore, type Message, type MessageStatus, type NewMessage } from "./ConversationStore.ts"
import { IdGenerator } from "./IdGenerator.ts"
import { type Finish, LanguageModel, type ModelMessage, type ModelPart } from "./LanguageModel.ts"

/** A turn ready to run: its conversation resolved, its user message made. */
export interface Prepared {
  /** The provider's model id. */
  readonly model: string
  readonly resolution: Resolution
  readonly userMessage: NewMessage
  /** The id to store the reply under; a fresh one when absent. */
  readonly replyId?: string | undefined
}

/** How a turn can fail once it runs. */
export type TurnError = ModelError | StoreUnavailable | ServerShutdown

/** The turns of a chat service. */
export interface Turns {
  /**
   * Runs a turn on the current fiber, handing each non-empty text delta to
   * `onText`. Interrupting the fiber ends the turn as `interruptedAs` says
   * (default `client_closed`; always `shutdown` once `shutdown` ran) and
   * stores what it has.
   */
  readonly run: (
    context: TurnContext,
    prepared: Prepared,
    onText: (text: string) => Effect.Effect<void>,
    interruptedAs?: () => Interruption
  ) => Effect.Effect<void, TurnError>
  /** Whether `shutdown` has run: new turns fail with `ServerShutdown`. */
  readonly isShuttingDown: () => boolean
  /** Refuses new turns, interrupts the running ones and waits for them to store their replies. */
  readonly shutdown: Effect.Effect<void>
}

/** Why a turn was interrupted, as its outcome. */
export type Interruption = "client_closed" | "cancelled"

/** The status a reply is stored with, by how its turn ended. */
export const statusOf = (outcome: Outcome): MessageStatus => {
  switch (outcome) {
    case "complete":
      return "complete"
    case "client_closed":
    case "cancelled":
      return "cancelled"
    case "shutdown":
    case "interrupted":
      return "interrupted"
    case "model_error":
    case "store_error":
      return "error"
  }
}

/**
 * The model's view of stored history: a turn whose reply failed (`error`), is
 * empty or was never stored is dropped whole — its user message too — so roles
 * alternate.
 */
export const toModelMessages = (history: ReadonlyArray<Message>): Array<ModelMessage> => {
  const messages: Array<ModelMessage> = []
  for (const message of history) {
    const unanswered = messages.at(-1)?.role === "user"
    if (message.role === "user") {
      if (unanswered) messages.pop()
      messages.push({ role: "user", content: message.content })
    } else if (message.status === "error" || message.content === "") {
      if (unanswered) messages.pop()
    } else if (unanswered) {
      messages.push({ role: "assistant", content: message.content })
    }
  }
  if (messages.at(-1)?.role === "user") messages.pop()
  return messages
}

/** Builds the turns on the store, model and hooks in context. */
export const make = Effect.gen(function* () {
  const store = yield* ConversationStore
  const model = yield* LanguageModel
  const hooks = yield* ChatHooks
  const ids = yield* IdGenerator
  const clock = yield* Clock.Clock
  const millis = () => clock.currentTimeMillisUnsafe()

  const running = new Set<Fiber.Fiber<unknown, unknown>>()
  let down = false

  const run: Turns["run"] = (context, prepared, onText, interruptedAs = () => "client_closed") => {
    const { conversation, source } = prepared.resolution
    const { userMessage } = prepared
    const userId = context.userId
    const conversationId = conversation.id
    let reply = ""
    let finish: Finish | undefined
    // A conversation the resolution created holds the user message already.
    let userStored = source !== "resumed"
    let startedAt = 0
    let modelCalledAt = 0

    const onPart = (part: ModelPart): Effect.Effect<void> => {
      if (part._tag !== "TextDelta") {
        finish = part
        return Effect.void
      }
      if (part.text === "") return Effect.void
      const first = reply === ""
      reply += part.text
      if (!first) return onText(part.text)
      const latencyMillis = millis() - modelCalledAt
      return Effect.andThen(
        hooks.firstToken({ ...context, conversationId, latencyMillis }),
        onText(part.text)
      )
    }

    // Detached: a turn cancelled while the write is on its way lets it finish (a database
    // commits it anyway), then stores its reply after it — see `storeReply`.
    let userWrite: Fiber.Fiber<boolean, StoreUnavailable> | undefined
    const storeUserMessage = Effect.gen(function* () {
      userWrite = yield* Effect.forkDetach(store.append({ userId, conversationId, messages: [userMessage] }))
      yield* Fiber.join(userWrite)
      userStored = true
    })

    /**
     * The history the model gets, once this turn's user message is stored. A
     * resumed turn does both at once: one store round trip before the model,
     * not two. Neither cuts the other short, so a user message that was stored
     * gets its reply (or the error) stored after it.
     */
    const historyForModel: Effect.Effect<ReadonlyArray<Message>, StoreUnavailable> = userStored
      ? Effect.succeed([])
      : Effect.flatMap(
          Effect.all([store.history({ userId, conversationId }), storeUserMessage], {
            concurrency: 2,
            mode: "result"
          }),
          ([history, stored]) =>
            Result.isFailure(stored)
              ? Effect.fail(stored.failure)
              : Result.isFailure(history)
                ? Effect.fail(history.failure)
                : Effect.succeed(history.success)
        )

    const body = Effect.gen(function* () {
      startedAt = millis()
      const history = yield* historyForModel
      modelCalledAt = millis()
      yield* Stream.runForEach(
        model.streamText({
          model: prepared.model,
          // The history holds this turn's message if its write finished first:
          // an unanswered last turn, which `toModelMessages` leaves out.
          messages: [...toModelMessages(history), { role: "user", content: userMessage.content }]
        }),
        onPart
      )
    })

    const outcomeOf = (exit: Exit.Exit<unknown, TurnError>): Outcome => {
      if (Exit.isSuccess(exit)) return "complete"
      const error = Cause.findErrorOption(exit.cause)
      if (error._tag === "None") return down ? "shutdown" : interruptedAs()
      switch (error.value._tag) {
        case "ModelError":
          return "model_error"
        case "StoreUnavailable":
          return "store_error"
        case "ServerShutdown":
          return "shutdown"
      }
    }

    /** Whether this turn's user message is stored, waiting for its write if the turn ended during it. */
    const userMessageStored: Effect.Effect<boolean> = Effect.suspend(() =>
      userStored || userWrite === undefined
        ? Effect.succeed(userStored)
        : Effect.map(Fiber.await(userWrite), Exit.isSuccess)
    )

    const storeReply = (outcome: Outcome) => {
      const status = statusOf(outcome)
      return Effect.gen(function* () {
        const assistant: NewMessage = {
          id: prepared.replyId ?? (yield* ids.next),
          role: "assistant",
          content: reply,
          status,
          createdAt: new Date(millis()),
          metadata: {
            model: prepared.model,
            ...(finish?.stopReason === undefined ? {} : { stopReason: finish.stopReason }),
            ...(finish?.usage === undefined ? {} : { usage: finish.usage })
          }
        }
        yield* store.append({ userId, conversationId, messages: [assistant] })
      }).pipe(
        Effect.catchCause((cause) =>
          Effect.logError("Could not store the assistant reply", cause).pipe(
            Effect.annotateLogs({ conversationId, status })
          )
        ),
        // No reply without its user message before it.
        Effect.when(userMessageStored),
        Effect.asVoid
      )
    }

    const onEnd = (exit: Exit.Exit<unknown, TurnError>) => {
      const outcome = outcomeOf(exit)
      return Effect.andThen(
        storeReply(outcome),
        Effect.suspend(() =>
          hooks.turnEnded({
            ...context,
            conversationId,
            outcome,
            durationMillis: startedAt === 0 ? 0 : millis() - startedAt
          })
        )
      )
    }

    // Registered before it starts, so a shutdown from here on interrupts it.
    return Effect.withFiber((fiber) => {
      // Its metadata event went out before the shutdown: it ends as one the
      // shutdown interrupted, reported and stored as such.
      if (down) {
        const shutdown = new ServerShutdown()
        return Effect.andThen(onEnd(Exit.fail(shutdown)), Effect.fail(shutdown))
      }
      running.add(fiber)
      return body.pipe(Effect.onExit(onEnd), Effect.ensuring(Effect.sync(() => running.delete(fiber))))
    })
  }

  return {
    run,
    isShuttingDown: () => down,
    shutdown: Effect.suspend(() => {
      down = true
      const turns = [...running]
      for (const fiber of turns) fiber.interruptUnsafe()
      return Fiber.awaitAll(turns)
    }).pipe(Effect.asVoid)
  } satisfies Turns
})
