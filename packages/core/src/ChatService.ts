/**
 * The chat service: a request's turn, as a metadata-first stream or as one
 * reply. It puts the pieces together, each a module of its own:
 *
 * - `ConversationResolver` finds or creates the conversation within its time
 *   budget (a temporary id when the store is down), before anything streams;
 * - `ChatStream` sends the metadata event at once, alone, then the turn's
 *   events, heartbeats while the model is silent, and `[DONE]`;
 * - `TurnRunner` runs a streamed turn apart from the connection that asked
 *   for it, logging its events in the `TurnLog`, so a client can resume it
 *   (`resume`) and anyone can stop it (`stop`);
 * - `ChatTurn` runs the turn: history, model, deltas, the reply stored
 *   however the turn ends;
 * - `OutboxStore` stands in front of the store, so writes the database cannot
 *   take now wait in the `ConversationOutbox` and nothing is lost.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import { ChatConfig } from "./ChatConfig.ts"
import { type ChatError, ServerShutdown } from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatHooks, type Transport, type TurnContext } from "./ChatHooks.ts"
import type { ChatRequest } from "./ChatRequest.ts"
import * as ChatStream from "./ChatStream.ts"
import * as ChatTurn from "./ChatTurn.ts"
import * as ConversationOutbox from "./ConversationOutbox.ts"
import * as ConversationResolver from "./ConversationResolver.ts"
import type { ConversationStore, NewMessage } from "./ConversationStore.ts"
import * as Heartbeat from "./Heartbeat.ts"
import type { Principal } from "./Identity.ts"
import { IdGenerator } from "./IdGenerator.ts"
import { LanguageModel } from "./LanguageModel.ts"
import * as OutboxStore from "./OutboxStore.ts"
import * as SocketTickets from "./SocketTickets.ts"
import * as StreamSink from "./StreamSink.ts"
import * as TurnLog from "./TurnLog.ts"
import * as TurnRunner from "./TurnRunner.ts"

export { ServerShutdown } from "./ChatError.ts"
export { DONE_FRAME, type StreamItem, sseFrame } from "./ChatStream.ts"
export { toModelMessages } from "./ChatTurn.ts"

/** A chat turn to run. */
export interface ChatInput {
  readonly principal: Principal
  readonly request: ChatRequest
  /** When the request arrived (epoch millis); defaults to when the turn starts. */
  readonly receivedAtMillis?: number | undefined
  /** The request id, for logs and hooks. */
  readonly requestId?: string | undefined
  /** What carries the stream, for metrics (default `sse`). */
  readonly transport?: Transport | undefined
}

/** Where a turn to resume starts: its conversation and the event after which to go on. */
export interface ResumeInput {
  readonly userId: string
  readonly conversationId: string
  /** The last event the reader has; from the turn's start when absent. */
  readonly after?: { readonly turnId: string; readonly seq: number } | undefined
}

/** The body of a non-streaming reply. */
export const Completion = Schema.Struct({
  conversation_id: Schema.String.annotate({ description: "The conversation the turn belongs to." }),
  model: Schema.String.annotate({ description: "The model that answered." }),
  message: Schema.Struct({ role: Schema.Literal("assistant"), content: Schema.String }),
  created_at: Schema.String.annotate({ description: "When the reply was made (ISO 8601)." })
}).annotate({ description: "The whole reply of a chat request without `stream: true`." })
export type Completion = typeof Completion.Type

/** The chat service. */
export interface Service {
  /**
   * Resolves the conversation and returns the event stream; fails before the
   * stream starts with `InvalidRequest`, `StoreUnavailable` (the outbox is
   * full) or `ServerShutdown`, never with `ConversationNotFound`.
   */
  readonly stream: (
    input: ChatInput
  ) => Effect.Effect<Stream.Stream<ChatStream.StreamItem>, ChatError | ServerShutdown>
  /**
   * `stream` as the chat endpoint sends it: one SSE frame per item, then
   * `[DONE]`. The stream also carries its producer (`StreamSink.producerOf`),
   * which a binding that writes the response itself runs instead of reading it.
   */
  readonly sse: (input: ChatInput) => Effect.Effect<Stream.Stream<Uint8Array>, ChatError | ServerShutdown>
  /**
   * The SSE stream that resumes the conversation's turn after the event
   * `after` names (from the start when absent); `None` when there is
   * nothing to replay: no turn logged, `after` names another turn, or the
   * events after it are gone. The caller checks the conversation is the user's.
   */
  readonly resume: (input: ResumeInput) => Effect.Effect<Option.Option<Stream.Stream<Uint8Array>>>
  /**
   * `stream` as a producer of items in any encoding, for a transport that
   * writes them itself (the WebSocket route).
   */
  readonly produce: <A>(
    input: ChatInput,
    encoding: ChatStream.Encoding<A>
  ) => Effect.Effect<StreamSink.Producer<A>, ChatError | ServerShutdown>
  /** `resume` as a producer of items in any encoding. */
  readonly produceResume: <A>(
    input: ResumeInput,
    encoding: ChatStream.Encoding<A>
  ) => Effect.Effect<Option.Option<StreamSink.Producer<A>>>
  /**
   * Stops the conversation's running turn, wherever it runs; its id, or
   * `None` when no turn was running. The caller checks the conversation is the user's.
   */
  readonly stop: (input: {
    readonly userId: string
    readonly conversationId: string
  }) => Effect.Effect<Option.Option<string>>
  /** The conversation's running turn, if any, with its reply so far. */
  readonly runningTurn: (input: {
    readonly userId: string
    readonly conversationId: string
  }) => Effect.Effect<Option.Option<TurnLog.Snapshot>>
  /**
   * Resolves once no streamed turn runs on this instance — a turn whose
   * client left keeps going for the disconnect grace window — and every
   * ended turn's end is in the turn log (a shared log's write is bounded by
   * its lease). A runtime that freezes the process between requests (AWS
   * Lambda) waits for it.
   */
  readonly idle: Effect.Effect<void>
  /** Runs a whole turn and returns the reply (the `stream: false` path). */
  readonly complete: (input: ChatInput) => Effect.Effect<Completion, ChatError | ServerShutdown>
  /**
   * Ends every open stream with an error event and `[DONE]`; new turns fail.
   * Then waits, up to `outboxFlushTimeout`, for queued writes to reach the store.
   */
  readonly shutdown: Effect.Effect<void>
  /** Whether `shutdown` has begun: `/health` then answers `503`. */
  readonly isShuttingDown: () => boolean
  /** Resolves once `shutdown` begins: a connection that carries many turns (a WebSocket) closes then. */
  readonly awaitShutdown: Effect.Effect<void>
}

/** The chat service tag. */
export class ChatService extends Context.Service<ChatService, Service>()("@convoke/core/ChatService") {}

/** Builds the chat service from the resolver, the store (with its outbox), the model and the settings. */
export const make = Effect.gen(function* () {
  const resolver = yield* ConversationResolver.ConversationResolver
  const outbox = yield* ConversationOutbox.ConversationOutbox
  const model = yield* LanguageModel
  const config = yield* ChatConfig
  const ids = yield* IdGenerator
  const hooks = yield* ChatHooks
  const turns = yield* ChatTurn.make
  const log = yield* TurnLog.TurnLog
  const runner = yield* TurnRunner.make(turns, { disconnectGrace: config.disconnectGrace })
  const heartbeat = yield* Heartbeat.make(config.heartbeatInterval)
  const scope = yield* Effect.scope
  const clock = yield* Clock.Clock
  const millis = () => clock.currentTimeMillisUnsafe()
  const shuttingDown = yield* Deferred.make<void>()

  const contextOf = (input: ChatInput, stream: boolean): TurnContext => ({
    userId: input.principal.userId,
    requestId: input.requestId,
    stream,
    ...(stream ? { transport: input.transport ?? "sse" } : {})
  })

  /** Checks the model, makes the user message and resolves the conversation. */
  const prepare = Effect.fnUntraced(function* (input: ChatInput, stream: boolean) {
    if (turns.isShuttingDown()) return yield* new ServerShutdown()
    const providerModel = yield* model.resolveModel(input.request.model)
    const userMessage: NewMessage = {
      id: yield* ids.next,
      role: "user",
      content: input.request.message,
      status: "complete",
      createdAt: new Date(millis())
    }
    const resolution = yield* resolver.resolve({
      principal: input.principal,
      conversationId: input.request.conversation_id,
      stream,
      message: input.request.message,
      requestId: input.requestId,
      messages: [userMessage]
    })
    return { model: providerModel, resolution, userMessage } satisfies ChatTurn.Prepared
  })

  /** Resolves a turn and returns the producer of its stream, each item as `encoding` makes it. */
  const open = Effect.fnUntraced(function* <A>(input: ChatInput, encoding: ChatStream.Encoding<A>) {
    const receivedAt = input.receivedAtMillis ?? millis()
    const context = contextOf(input, true)
    const prepared = yield* prepare(input, true)
    const conversationId = prepared.resolution.conversation.id
    const turnId = yield* ids.next
    const metadata = ChatEvent.metadata({
      temporary: prepared.resolution.temporary,
      conversationId,
      model: config.publicModel,
      timestampSeconds: Math.floor(millis() / 1000),
      turnId
    })
    const turn: TurnLog.TurnInfo = {
      turnId,
      conversationId,
      userId: input.principal.userId,
      metadata,
      replyId: yield* ids.next,
      model: prepared.model,
      startedAt: millis()
    }
    return ChatStream.producer({
      metadata,
      encoding,
      begin: runner.begin(context, prepared, turn),
      follow: (deliver) => runner.follow(turnId, 0, deliver),
      heartbeat,
      metadataSent: (sentAt) =>
        hooks.metadataSent({
          ...context,
          conversationId,
          temporary: prepared.resolution.temporary,
          latencyMillis: sentAt - receivedAt
        }),
      isShuttingDown: turns.isShuttingDown
    })
  })

  /** A producer's SSE stream, which also carries the producer for bindings that write natively. */
  const sseOf = (produce: StreamSink.Producer<Uint8Array>) =>
    StreamSink.withProducer(ChatStream.buffered(produce, scope), produce)

  /** The user's turn of the conversation the log has, if any. */
  const turnOf = (userId: string, conversationId: string) =>
    Effect.map(
      log.current(conversationId),
      Option.filter((snapshot) => snapshot.turn.userId === userId)
    )

  const produceResume = <A>(
    { userId, conversationId, after }: ResumeInput,
    encoding: ChatStream.Encoding<A>
  ) =>
    Effect.map(turnOf(userId, conversationId), (found): Option.Option<StreamSink.Producer<A>> => {
      if (Option.isNone(found)) return Option.none()
      const { turn, running, firstSeq, lastSeq } = found.value
      if (after !== undefined && after.turnId !== turn.turnId) return Option.none()
      const afterSeq = after?.seq ?? 0
      // Events after `afterSeq` must all be kept, and an ended turn must have some left. A
      // running turn may be behind the id in a shared log (written in the background): follow it.
      if (afterSeq + 1 < firstSeq || (!running && afterSeq >= lastSeq)) return Option.none()
      return Option.some(
        ChatStream.producer({
          metadata: ChatEvent.resumed(turn.metadata),
          encoding,
          begin: Effect.succeed(ChatStream.alreadyBegun),
          follow: (deliver) => runner.follow(turn.turnId, afterSeq, deliver),
          heartbeat,
          metadataSent: () => Effect.void,
          isShuttingDown: turns.isShuttingDown
        })
      )
    })

  const resume: Service["resume"] = (input) =>
    Effect.map(produceResume(input, ChatStream.asSse), Option.map(sseOf))

  const stop: Service["stop"] = ({ userId, conversationId }) =>
    Effect.flatMap(turnOf(userId, conversationId), (found) =>
      Option.isNone(found) || !found.value.running
        ? Effect.succeed(Option.none())
        : Effect.map(log.requestStop(found.value.turn.turnId), (stopped) =>
            stopped ? Option.some(found.value.turn.turnId) : Option.none()
          )
    )

  const complete = Effect.fnUntraced(function* (input: ChatInput) {
    const prepared = yield* prepare(input, false)
    let content = ""
    // On a fiber of its own, so shutdown ends the turn, not the request.
    const turn = yield* Effect.forkChild(
      turns.run(contextOf(input, false), prepared, (text) =>
        Effect.sync(() => {
          content += text
        })
      ),
      { startImmediately: true }
    )
    const exit = yield* Fiber.await(turn)
    if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) && turns.isShuttingDown()) {
      return yield* new ServerShutdown()
    }
    yield* exit
    return {
      conversation_id: prepared.resolution.conversation.id,
      model: config.publicModel,
      message: { role: "assistant", content },
      created_at: new Date(millis()).toISOString()
    } satisfies Completion
  })

  return ChatService.of({
    stream: (input) =>
      Effect.map(open(input, ChatStream.asItems), (produce) => ChatStream.buffered(produce, scope)),
    sse: (input) => Effect.map(open(input, ChatStream.asSse), sseOf),
    resume,
    produce: open,
    produceResume,
    stop,
    idle: runner.idle,
    runningTurn: ({ userId, conversationId }) =>
      Effect.map(
        turnOf(userId, conversationId),
        Option.filter((snapshot) => snapshot.running)
      ),
    complete,
    // The interrupted turns store their partial replies, then the outbox gets its chance to reach the store.
    shutdown: Effect.andThen(Deferred.succeed(shuttingDown, undefined), turns.shutdown).pipe(
      Effect.andThen(outbox.drained),
      Effect.timeout(config.outboxFlushTimeout),
      Effect.ignore
    ),
    isShuttingDown: turns.isShuttingDown,
    awaitShutdown: Deferred.await(shuttingDown)
  })
})

/** Options of `layerWith`. */
export interface Options {
  readonly outbox?: ConversationOutbox.Options | undefined
  /**
   * Where streamed turns are logged for resume and stop: in memory by
   * default (`TurnLog.layerMemory()`); `RedisTurnLog.layer()` shares them
   * with every instance.
   */
  readonly turnLog?: Layer.Layer<TurnLog.TurnLog> | undefined
  /**
   * Where WebSocket tickets are kept: in memory by default
   * (`SocketTickets.layerMemory()`); `SocketTickets.layerRedis()` lets any
   * instance accept a ticket another one issued.
   */
  readonly socketTickets?: Layer.Layer<SocketTickets.SocketTickets> | undefined
}

/**
 * The chat service with its resolver and its outbox in front of the store in
 * context. Also provides the outbox, the turn log, the WebSocket tickets, and the store with the
 * outbox in front of it, so the rest of the application sees what the chat
 * turns see.
 */
export const layerWith = (
  options: Options = {}
): Layer.Layer<
  | ChatService
  | ConversationStore
  | ConversationOutbox.ConversationOutbox
  | TurnLog.TurnLog
  | SocketTickets.SocketTickets,
  never,
  ConversationStore | LanguageModel
> =>
  Layer.effect(ChatService, make).pipe(
    Layer.provide(ConversationResolver.layer),
    Layer.provideMerge(OutboxStore.layer),
    Layer.provideMerge(ConversationOutbox.layer(options.outbox)),
    Layer.provideMerge(options.turnLog ?? TurnLog.layerMemory()),
    Layer.provideMerge(options.socketTickets ?? SocketTickets.layerMemory())
  )

/** The chat service with the default outbox; needs a store and a model. */
export const layer = layerWith()
