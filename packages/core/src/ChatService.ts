/**
 * The metadata-first chat stream.
 *
 * `stream` resolves the conversation (failing before the stream starts with a
 * typed error; a new conversation is stored with the user message, in one
 * write), then returns a stream whose first element is the metadata event,
 * built from values already in hand so it is emitted at once; only after it
 * is pulled are history loaded, the user message of a resumed or temporary
 * conversation stored and the model called. Deltas become content events; a
 * failure after the start becomes an error event. Whatever the model produced
 * is stored when the stream ends — `complete`, `partial` (client gone,
 * shutdown) or `error`.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Result, Schema, Stream } from "effect"
import * as AuditLog from "./AuditLog.ts"
import { ChatConfig } from "./ChatConfig.ts"
import {
  type ChatError,
  type ConversationNotFound,
  type InvalidRequest,
  type ModelError,
  StoreUnavailable
} from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatHooks, type Outcome, type TurnContext } from "./ChatHooks.ts"
import type { ChatRequest } from "./ChatRequest.ts"
import * as ConversationOutbox from "./ConversationOutbox.ts"
import * as ConversationResolver from "./ConversationResolver.ts"
import {
  type Conversation,
  ConversationStore,
  type Message,
  type MessageStatus,
  type NewMessage
} from "./ConversationStore.ts"
import * as Deadline from "./Deadline.ts"
import type { Principal } from "./Identity.ts"
import { IdGenerator } from "./IdGenerator.ts"
import { type Finish, LanguageModel, type ModelMessage, type ModelPart } from "./LanguageModel.ts"
import * as StreamSink from "./StreamSink.ts"

/** The stream was cut because the server is shutting down. */
export class ServerShutdown extends Schema.TaggedError<ServerShutdown>()("ServerShutdown", {}) {}

/** Marks a heartbeat in the event stream; encoded as an SSE comment, never as data. */
export interface Heartbeat {
  readonly type: "heartbeat"
}
const heartbeat: Heartbeat = { type: "heartbeat" }

/** An open stream, as the heartbeat sees it. */
interface Silence {
  lastSent: number
  readonly ping: () => void
}

/** What a chat stream emits: wire events, and heartbeats while the model is silent. */
export type StreamItem = ChatEvent.ChatEvent | Heartbeat

const encoder = new TextEncoder()
const HEARTBEAT_FRAME = encoder.encode(ChatEvent.HEARTBEAT)

/** The `[DONE]` frame that ends every SSE stream, as bytes. */
export const DONE_FRAME: Uint8Array = encoder.encode(ChatEvent.DONE)

/** The SSE frame of a stream item, as bytes: an event's `data:` line, or a heartbeat's comment. */
export const sseFrame = (item: StreamItem): Uint8Array =>
  item.type === "heartbeat" ? HEARTBEAT_FRAME : encoder.encode(ChatEvent.encode(item))

/** How a turn's stream carries its items: each one as `item` makes it, then `end` if given. */
interface Encoding<A> {
  readonly item: (item: StreamItem) => A
  readonly end?: A | undefined
}

const asItems: Encoding<StreamItem> = { item: (item) => item }
const asSse: Encoding<Uint8Array> = { item: sseFrame, end: DONE_FRAME }

/** A turn ready to run: its conversation resolved, its user message made. */
interface Prepared {
  /** The provider's model id. */
  readonly model: string
  readonly resolution: ConversationResolver.Resolution
  /** Whether the conversation waits in the outbox (its id is temporary). */
  readonly temporary: boolean
  readonly userMessage: NewMessage
}

/**
 * Resumes once the event loop has polled for I/O: two scheduler hops (each a
 * `setImmediate`), since the first may run before the next poll. The turn
 * starts after it, so a reader gets the metadata event in a read of its own
 * even when nothing (no store write, no model latency) separates it from the
 * first content.
 */
const afterNextPoll = Effect.andThen(Effect.yieldNow, Effect.yieldNow)

/** Items a stream holds for a slow reader before the model is paused. */
const BUFFER_SIZE = 16

/** A chat turn to run. */
export interface ChatInput {
  readonly principal: Principal
  readonly request: ChatRequest
  /** When the request arrived (epoch millis); defaults to when the turn starts. */
  readonly receivedAtMillis?: number | undefined
  /** The request id, for logs and hooks. */
  readonly requestId?: string | undefined
}

/** The body of a non-streaming reply. */
export interface Completion {
  readonly conversation_id: string
  readonly model: string
  readonly message: { readonly role: "assistant"; readonly content: string }
  readonly created_at: string
}

/** The chat service. */
export interface Service {
  /**
   * Resolves the conversation and returns the event stream; fails before the
   * stream starts with `InvalidRequest`, `ConversationNotFound` (never for
   * streams) or `StoreUnavailable`.
   */
  readonly stream: (input: ChatInput) => Effect.Effect<Stream.Stream<StreamItem>, ChatError>
  /**
   * `stream` as the chat endpoint sends it: one SSE frame per item, then
   * `[DONE]`, produced straight into the stream with no stage per frame. The
   * stream also carries its producer (`StreamSink.producerOf`), which a
   * binding that writes the response itself runs instead of reading it.
   */
  readonly sse: (input: ChatInput) => Effect.Effect<Stream.Stream<Uint8Array>, ChatError>
  /** Runs a whole turn and returns the reply (the `stream: false` path). */
  readonly complete: (input: ChatInput) => Effect.Effect<Completion, ChatError | ServerShutdown>
  /**
   * Ends every open stream with an error event and `[DONE]`; new turns fail.
   * Then waits, up to `outboxFlushTimeout`, for queued writes to reach the store.
   */
  readonly shutdown: Effect.Effect<void>
  /** The writes waiting for the store (see `ConversationOutbox`). */
  readonly outbox: ConversationOutbox.Service
}

/** The chat service tag. */
export class ChatService extends Context.Service<ChatService, Service>()("@convoke/core/ChatService") {}

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

/** Builds the chat service from the store, the model and the settings. */
export const make = Effect.gen(function* () {
  const store = yield* ConversationStore
  const model = yield* LanguageModel
  const config = yield* ChatConfig
  const ids = yield* IdGenerator
  const hooks = yield* ChatHooks
  const outbox = yield* ConversationOutbox.ConversationOutbox
  const audit = yield* AuditLog.AuditLog

  // Read once: a turn asks the time about ten times, each then a plain call.
  const clock = yield* Clock.Clock
  const millis = () => clock.currentTimeMillisUnsafe()
  const now = () => new Date(millis())

  const queue = (entry: ConversationOutbox.Entry) =>
    Effect.flatMap(outbox.enqueue(entry), (queued) =>
      queued
        ? Effect.void
        : Effect.fail(new StoreUnavailable({ message: "The conversation store is unavailable" }))
    )

  /**
   * Stores messages: directly, or through the outbox when the conversation is
   * waiting there or the store fails or is too slow — so nothing is lost and
   * the conversation's messages keep their order.
   */
  const persist = (
    userId: string,
    conversationId: string,
    messages: ReadonlyArray<NewMessage>,
    timeout: Duration.Duration
  ): Effect.Effect<void, StoreUnavailable> => {
    const entry: ConversationOutbox.Entry = { _tag: "Append", userId, conversationId, messages }
    if (outbox.holds(conversationId)) return queue(entry)
    return store.append({ userId, conversationId, messages }).pipe(
      Deadline.within(timeout),
      Effect.asVoid,
      Effect.catch(() => queue(entry))
    )
  }

  /** The stored history, plus what still waits in the outbox. */
  const historyOf = (userId: string, conversationId: string) => {
    if (!outbox.holds(conversationId)) return store.history({ userId, conversationId })
    return store.history({ userId, conversationId }).pipe(
      Deadline.within(config.creationBudget),
      Effect.orElseSucceed((): ReadonlyArray<Message> => []),
      Effect.map((stored) => [...stored, ...outbox.pendingMessages(conversationId)])
    )
  }

  /** Turns that are running, so `shutdown` can end them. */
  const running = new Set<Fiber.Fiber<unknown, unknown>>()
  let down = false

  // Heartbeats: one fiber for every open stream, not one each. It looks every
  // third of an interval and pings a stream that sent nothing for 90% of one,
  // so a silent stream gets a comment after 13.5–20 s (at the default 15 s)
  // and a talkative one never does. It runs only while streams are open.
  const layerScope = yield* Effect.scope
  const silent = new Set<Silence>()
  const intervalMillis = Duration.toMillis(config.heartbeatInterval)
  let pinging = false
  const pingSilent = Effect.gen(function* () {
    while (silent.size > 0) {
      yield* Effect.sleep(Duration.millis(intervalMillis / 3))
      const at = millis()
      for (const stream of silent) {
        if (at - stream.lastSent >= intervalMillis * 0.9) {
          stream.lastSent = at
          stream.ping()
        }
      }
    }
  }).pipe(
    Effect.ensuring(
      Effect.sync(() => {
        pinging = false
      })
    )
  )
  const watchSilence = (stream: Silence) =>
    Effect.suspend(() => {
      silent.add(stream)
      if (pinging) return Effect.void
      pinging = true
      return Effect.asVoid(Effect.forkIn(pingSilent, layerScope))
    })

  /**
   * Runs one turn on the current fiber: load history, store the user message
   * (unless it was stored with the conversation), call the model and hand
   * each non-empty text delta to `onText` (which may wait: that is the
   * back-pressure of a slow reader), then store the reply however the turn
   * ends. `shutdown` interrupts the fiber; the turn then ends
   * as `shutdown` and stores what it has as `partial`.
   */
  const runTurn = (
    context: TurnContext,
    prepared: Prepared,
    onText: (text: string) => Effect.Effect<void>
  ): Effect.Effect<void, ModelError | StoreUnavailable | ServerShutdown> => {
    const { conversation, source } = prepared.resolution
    const { userMessage } = prepared
    const userId = context.userId
    let reply = ""
    let finish: Finish | undefined
    // A conversation created in the store holds the user message already.
    let userStored = source !== "resumed" && source !== "temporary"
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
      return Effect.andThen(
        hooks.firstToken({
          ...context,
          conversationId: conversation.id,
          latencyMillis: millis() - modelCalledAt
        }),
        onText(part.text)
      )
    }

    const storeUserMessage = userStored
      ? Effect.void
      : Effect.andThen(
          persist(userId, conversation.id, [userMessage], config.storeTimeout),
          Effect.sync(() => {
            userStored = true
          })
        )

    /**
     * The history the model gets, once this turn's user message is stored. A
     * resumed turn does both at once: one store round trip before the model,
     * not two. Neither cuts the other short, so a user message that was stored
     * gets its reply (or the error) stored after it.
     */
    const historyForModel =
      source !== "resumed"
        ? Effect.as(storeUserMessage, [] as ReadonlyArray<Message>)
        : Effect.flatMap(
            Effect.all([historyOf(userId, conversation.id), storeUserMessage], {
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

    const outcomeOf = (exit: Exit.Exit<unknown, ModelError | StoreUnavailable | ServerShutdown>): Outcome => {
      if (Exit.isSuccess(exit)) return "complete"
      const error = Cause.findErrorOption(exit.cause)
      if (error._tag === "None") return down ? "shutdown" : "client_closed"
      switch (error.value._tag) {
        case "ModelError":
          return "model_error"
        case "StoreUnavailable":
          return "store_error"
        case "ServerShutdown":
          return "shutdown"
      }
    }

    const persistReply = (outcome: Outcome) => {
      if (!userStored) return Effect.void
      const status: MessageStatus =
        outcome === "complete" ? "complete" : outcome === "model_error" ? "error" : "partial"
      return Effect.gen(function* () {
        yield* persist(
          userId,
          conversation.id,
          [
            {
              id: yield* ids.next,
              role: "assistant",
              content: reply,
              status,
              createdAt: now(),
              metadata: {
                model: prepared.model,
                ...(finish?.stopReason === undefined ? {} : { stopReason: finish.stopReason }),
                ...(finish?.usage === undefined ? {} : { usage: finish.usage })
              }
            }
          ],
          config.persistTimeout
        )
      }).pipe(
        Effect.catchCause((cause) =>
          Effect.logError("Could not store the assistant reply", cause).pipe(
            Effect.annotateLogs({ conversationId: conversation.id, status })
          )
        )
      )
    }

    const onEnd = (exit: Exit.Exit<unknown, ModelError | StoreUnavailable | ServerShutdown>) => {
      const outcome = outcomeOf(exit)
      return Effect.andThen(
        persistReply(outcome),
        Effect.suspend(() =>
          hooks.turnEnded({
            ...context,
            conversationId: conversation.id,
            outcome,
            durationMillis: startedAt === 0 ? 0 : millis() - startedAt
          })
        )
      )
    }

    // Registered before it starts, so a shutdown from here on interrupts it.
    return Effect.withFiber((fiber) => {
      if (down) return Effect.fail(new ServerShutdown())
      running.add(fiber)
      return body.pipe(Effect.onExit(onEnd), Effect.ensuring(Effect.sync(() => running.delete(fiber))))
    })
  }

  const errorEventOf = (error: ModelError | StoreUnavailable | ServerShutdown): ChatEvent.ErrorEvent => {
    switch (error._tag) {
      case "ModelError":
        return ChatEvent.error(error.type, error.message)
      case "StoreUnavailable":
        return ChatEvent.error(
          "unavailable",
          "The conversation store is unavailable; the reply was not generated"
        )
      case "ServerShutdown":
        return ChatEvent.error("shutdown", "The server is shutting down; resume the conversation by its id")
    }
  }

  /** Audits a creation, and a named conversation that turned out to be another user's. */
  const auditResolution = (
    context: TurnContext,
    requested: string | null | undefined,
    resolution: ConversationResolver.Resolution | undefined
  ) =>
    Effect.gen(function* () {
      const at = now()
      const entries: Array<AuditLog.Entry> = []
      if (resolution !== undefined && resolution.source !== "resumed") {
        entries.push({
          action: "conversation.created",
          cause: resolution.source,
          userId: context.userId,
          conversationId: resolution.conversation.id,
          requestId: context.requestId,
          at
        })
      }
      if (
        typeof requested === "string" &&
        ConversationResolver.isUuid(requested) &&
        (resolution === undefined || resolution.source === "unknown_id") &&
        (yield* store.exists(requested.toLowerCase()).pipe(Effect.orElseSucceed(() => false)))
      ) {
        entries.push({
          action: "conversation.cross_user_access",
          userId: context.userId,
          conversationId: requested.toLowerCase(),
          requestId: context.requestId,
          at
        })
      }
      if (entries.length > 0) yield* audit.record(entries)
    })

  /** A new conversation that waits in the outbox until the store is back. */
  const temporary = Effect.fnUntraced(function* (input: ChatInput, id: string) {
    if (!outbox.hasRoom()) {
      return yield* new StoreUnavailable({ message: "The conversation store is unavailable" })
    }
    const createdAt = now()
    const conversation: Conversation = {
      id,
      userId: input.principal.userId,
      title: ConversationResolver.titleFrom(input.request.message),
      createdAt,
      updatedAt: createdAt
    }
    yield* queue({ _tag: "Create", conversation, requestId: input.requestId })
    yield* Effect.logWarning("The store is unavailable; the stream starts on a temporary conversation").pipe(
      Effect.annotateLogs({ conversationId: id })
    )
    return { conversation, source: "temporary" } satisfies ConversationResolver.Resolution
  })

  const prepare = Effect.fnUntraced(function* (
    input: ChatInput,
    context: TurnContext
  ): Effect.fn.Return<Prepared, InvalidRequest | ConversationNotFound | StoreUnavailable | ServerShutdown> {
    if (down) return yield* new ServerShutdown()
    const providerModel = yield* model.resolveModel(input.request.model)
    const resolveStartedAt = millis()
    const elapsed = () => millis() - resolveStartedAt
    const requested = input.request.conversation_id
    const userMessage: NewMessage = {
      id: yield* ids.next,
      role: "user",
      content: input.request.message,
      status: "complete",
      createdAt: now()
    }

    // A conversation still waiting in the outbox resumes from there.
    const asked = ConversationResolver.classify(requested)
    const held = asked._tag === "Resume" ? outbox.held(context.userId, asked.id) : undefined
    if (held !== undefined) {
      return {
        model: providerModel,
        resolution: { conversation: held, source: "resumed" },
        temporary: true,
        userMessage
      }
    }

    const newId = yield* ids.next
    const inStore = ConversationResolver.resolveIn(store, {
      principal: input.principal,
      conversationId: requested,
      stream: context.stream,
      message: input.request.message,
      newId,
      messages: [userMessage]
    }).pipe(
      Deadline.within(context.stream ? config.creationBudget : config.storeTimeout),
      Effect.catchTag("TimeoutError", () =>
        Effect.fail(new StoreUnavailable({ message: "The conversation store did not answer in time" }))
      ),
      Effect.tapError((error) =>
        error._tag === "StoreUnavailable"
          ? Effect.suspend(() =>
              hooks.conversationFailed({ ...context, reason: "store_unavailable", durationMillis: elapsed() })
            )
          : error._tag === "ConversationNotFound"
            ? Effect.forkDetach(auditResolution(context, requested, undefined), { startImmediately: true })
            : Effect.void
      ),
      // Streams never wait for the store: they start on a temporary id it gets later.
      Effect.catchTag("StoreUnavailable", (error) =>
        context.stream ? temporary(input, newId) : Effect.fail(error)
      )
    )
    // While the outbox knows the store is down, streams do not spend their
    // budget finding that out again.
    const storeKnownDown = context.stream && !outbox.storeAvailable()
    if (storeKnownDown)
      yield* hooks.conversationFailed({ ...context, reason: "store_unavailable", durationMillis: 0 })
    const resolution = storeKnownDown ? yield* temporary(input, newId) : yield* inStore
    // For a stream, scheduled rather than started here: the metadata event
    // goes out first (and the turn yields before it stores anything).
    yield* Effect.forkDetach(auditResolution(context, requested, resolution), {
      startImmediately: !context.stream
    })
    yield* hooks.conversationResolved({
      ...context,
      conversationId: resolution.conversation.id,
      source: resolution.source,
      created: resolution.source !== "resumed",
      durationMillis: elapsed()
    })
    return {
      model: providerModel,
      resolution,
      temporary: resolution.source === "temporary",
      userMessage
    }
  })

  const contextOf = (input: ChatInput, stream: boolean): TurnContext => ({
    userId: input.principal.userId,
    requestId: input.requestId,
    stream
  })

  /**
   * Prepares a turn's stream and returns its producer: each item as
   * `encoding.item` makes it and `encoding.end` last, into a sink. One fiber
   * produces it all: the metadata event first, then the turn's events, with
   * the shared heartbeat's comments while it is silent. Interrupting that
   * fiber (the reader left, or `shutdown`) ends the turn.
   */
  const open = Effect.fnUntraced(function* <A>(input: ChatInput, encoding: Encoding<A>) {
    const receivedAt = input.receivedAtMillis ?? millis()
    const context = contextOf(input, true)
    const prepared = yield* prepare(input, context).pipe(
      Effect.catchTag("ServerShutdown", () => Effect.fail(shutdownUnavailable))
    )
    const metadata = ChatEvent.metadata({
      temporary: prepared.temporary,
      conversationId: prepared.resolution.conversation.id,
      model: config.publicModel,
      timestampSeconds: Math.floor(millis() / 1000)
    })
    const end = encoding.end === undefined ? [] : [encoding.end]

    const produce: StreamSink.Producer<A> = (sink) => {
      // Set when the turn starts; from then on it reports its own end.
      let turnStarted = false
      return Effect.gen(function* () {
        // First, into an empty sink; `afterNextPoll` below lets the reader
        // take it alone before the turn starts, however fast the model is.
        sink.trySend(encoding.item(metadata))
        const sentAt = millis()
        yield* hooks.metadataSent({
          ...context,
          conversationId: metadata.conversation_id,
          temporary: metadata.temporary === true,
          latencyMillis: sentAt - receivedAt
        })
        const listener: Silence = {
          lastSent: sentAt,
          // Dropped when the reader is behind: a reader that far behind needs no ping.
          ping: () => sink.trySend(encoding.item(heartbeat))
        }
        const send = (item: StreamItem) => {
          listener.lastSent = millis()
          return sink.send(encoding.item(item))
        }
        yield* afterNextPoll
        turnStarted = true
        yield* watchSilence(listener)
        yield* runTurn(context, prepared, (text) => send(ChatEvent.content(text))).pipe(
          Effect.catch((error) => send(errorEventOf(error))),
          Effect.ensuring(Effect.sync(() => silent.delete(listener)))
        )
      }).pipe(
        Effect.onExit((exit) => {
          if (Exit.isSuccess(exit)) return sink.close(end)
          // Ended by `shutdown`: the reader learns why, if it still reads.
          if (down) return sink.close([encoding.item(errorEventOf(new ServerShutdown())), ...end])
          // A reader that left before the turn started: its end is reported
          // here, so every stream has an outcome.
          return Effect.andThen(
            sink.close([]),
            turnStarted
              ? Effect.void
              : hooks.turnEnded({
                  ...context,
                  conversationId: metadata.conversation_id,
                  outcome: "client_closed",
                  durationMillis: 0
                })
          )
        })
      )
    }
    return produce
  })

  /** A producer as a stream, read through a small buffer (a full buffer pauses the model). */
  const buffered = <A>(produce: StreamSink.Producer<A>): Stream.Stream<A> =>
    Stream.callback<A>((queue) => produce(StreamSink.queueSink(queue, layerScope)), {
      bufferSize: BUFFER_SIZE
    })

  const complete = Effect.fnUntraced(function* (input: ChatInput) {
    const context = contextOf(input, false)
    const prepared = yield* prepare(input, context)
    let content = ""
    // On a fiber of its own, so `shutdown` ends the turn, not the request.
    const turn = yield* Effect.forkChild(
      runTurn(context, prepared, (text) =>
        Effect.sync(() => {
          content += text
        })
      ),
      { startImmediately: true }
    )
    const exit = yield* Fiber.await(turn)
    if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) && down) {
      return yield* new ServerShutdown()
    }
    yield* exit
    return {
      conversation_id: prepared.resolution.conversation.id,
      model: config.publicModel,
      message: { role: "assistant", content },
      created_at: now().toISOString()
    } satisfies Completion
  })

  return ChatService.of({
    stream: (input) => Effect.map(open(input, asItems), buffered),
    // Also producible straight into a response (`StreamSink.producerOf`).
    sse: (input) =>
      Effect.map(open(input, asSse), (produce) => StreamSink.withProducer(buffered(produce), produce)),
    complete,
    shutdown: Effect.gen(function* () {
      down = true
      const turns = [...running]
      for (const fiber of turns) fiber.interruptUnsafe()
      // The interrupted turns store their partial replies, then the outbox
      // gets its chance to reach the store.
      yield* Effect.timeout(Effect.andThen(Fiber.awaitAll(turns), outbox.drained), config.outboxFlushTimeout)
    }).pipe(Effect.ignore),
    outbox
  })
})

const shutdownUnavailable = new StoreUnavailable({ message: "The server is shutting down" })

/** The chat service as a layer; needs a store and a model. */
export const layer: Layer.Layer<ChatService, never, ConversationStore | LanguageModel> = Layer.effect(
  ChatService,
  make
).pipe(Layer.provide(ConversationOutbox.layer()))

/** The chat service with outbox options (capacity, retry timing). */
export const layerWith = (options: {
  readonly outbox?: ConversationOutbox.Options | undefined
}): Layer.Layer<ChatService, never, ConversationStore | LanguageModel> =>
  Layer.effect(ChatService, make).pipe(Layer.provide(ConversationOutbox.layer(options.outbox)))
