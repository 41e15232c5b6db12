/**
 * Observation points of a chat turn, for metrics, audit logs and tracing.
 *
 * Each hook is an effect run in the turn's fiber: keep it quick and never let
 * it fail (failures are logged and ignored). The default does nothing; combine
 * several observers with `combine`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as ClientKind from "./ClientKind.ts"
import type { Source } from "./ConversationResolver.ts"

/** What carries a streamed turn to its client. */
export type Transport = "sse" | "websocket"

/** Who and which request a hook event belongs to. */
export interface TurnContext {
  readonly userId: string
  readonly requestId: string | undefined
  readonly stream: boolean
  /** What carries the stream, for a streamed turn. */
  readonly transport?: Transport | undefined
}

/** A conversation was created or resumed for a request. */
export interface ConversationResolved extends TurnContext {
  readonly conversationId: string
  readonly source: Source
  /** Whether the conversation was created (every source but `resumed`). */
  readonly created: boolean
  /** Time spent resolving, including the store round trip. */
  readonly durationMillis: number
}

/** Creating or looking up the conversation failed. */
export interface ConversationFailed extends TurnContext {
  readonly reason: "store_unavailable"
  readonly durationMillis: number
}

/** The metadata event left the chat service. */
export interface MetadataSent extends TurnContext {
  readonly conversationId: string
  readonly temporary: boolean
  /** From the request's arrival to the metadata event. */
  readonly latencyMillis: number
}

/** The model produced its first text. */
export interface FirstToken extends TurnContext {
  readonly conversationId: string
  /** From the model call to its first text delta. */
  readonly latencyMillis: number
}

/**
 * How a turn ended: `complete`; `client_closed` (the client went away and no
 * reader came back within the disconnect grace window); `cancelled` (stopped
 * through the stop endpoint); `model_error`; `store_error` (the user message
 * could not be stored); `shutdown` (the server is stopping); `interrupted`
 * (the instance running it stopped renewing its lease — reported by the
 * instance that noticed).
 */
export type Outcome =
  | "complete"
  | "client_closed"
  | "cancelled"
  | "model_error"
  | "store_error"
  | "shutdown"
  | "interrupted"

/** A turn ended. */
export interface TurnEnded extends TurnContext {
  readonly conversationId: string
  readonly outcome: Outcome
  readonly durationMillis: number
}

/** A client asked to resume a conversation's turn (`GET …/stream`). */
export interface TurnResumed {
  readonly userId: string
  readonly requestId: string | undefined
  readonly conversationId: string
  /** `replayed`: a stream was served; `no_turn`: nothing to replay (204); `not_found`: 404. */
  readonly outcome: "replayed" | "no_turn" | "not_found"
}

/** A client asked to stop a conversation's turn (`POST …/stop`). */
export interface StopRequested {
  readonly userId: string
  readonly requestId: string | undefined
  readonly conversationId: string
  /** Whether a turn was running (202) or not (204). */
  readonly running: boolean
}

/** The size of the turn log, reported whenever a turn ends. */
export interface TurnLogSize {
  /** Turns kept (running, and ended within the retention window). */
  readonly turns: number
  /** Events kept. */
  readonly events: number
  /** Events dropped since start to stay within the log's bounds. */
  readonly dropped: number
  /** The memory the kept turns take, estimated (`TurnLog.Options.maxBytes`). */
  readonly bytes: number
}

/**
 * A request refused before its route ran: its credentials were missing or
 * invalid (`401`), or a rate limit refused it (`429`, with the limit spent).
 */
export interface RequestRefused {
  /** The request's path, without its query. */
  readonly path: string
  readonly reason: "unauthenticated" | "rate_limited"
  /** Which limit refused it, for `rate_limited`. */
  readonly scope?: "user" | "address" | "failures" | "concurrent" | undefined
}

/**
 * A WebSocket opened (`code` absent) or closed, with its close code (`1006`
 * when the connection dropped without one).
 */
export interface SocketChanged {
  readonly userId: string
  readonly requestId: string | undefined
  readonly code?: number | undefined
}

/**
 * A `chat.send` on a WebSocket was answered: `200` when its stream started,
 * else the status of its error frame — what `POST /api/v0.3/chat` answers
 * over HTTP, for the same per-client request counts.
 */
export interface SocketChatAnswered {
  readonly userId: string
  readonly requestId: string | undefined
  readonly client: ClientKind.ClientKind
  readonly status: number
}

/** The hooks. */
export interface Service {
  readonly conversationResolved: (event: ConversationResolved) => Effect.Effect<void>
  readonly conversationFailed: (event: ConversationFailed) => Effect.Effect<void>
  readonly metadataSent: (event: MetadataSent) => Effect.Effect<void>
  readonly firstToken: (event: FirstToken) => Effect.Effect<void>
  readonly turnEnded: (event: TurnEnded) => Effect.Effect<void>
  readonly turnResumed: (event: TurnResumed) => Effect.Effect<void>
  readonly stopRequested: (event: StopRequested) => Effect.Effect<void>
  readonly turnLogSize: (event: TurnLogSize) => Effect.Effect<void>
  readonly requestRefused: (event: RequestRefused) => Effect.Effect<void>
  readonly socketChanged: (event: SocketChanged) => Effect.Effect<void>
  readonly socketChatAnswered: (event: SocketChatAnswered) => Effect.Effect<void>
}

const none = () => Effect.void

/** Hooks that do nothing. */
export const noop: Service = {
  conversationResolved: none,
  conversationFailed: none,
  metadataSent: none,
  firstToken: none,
  turnEnded: none,
  turnResumed: none,
  stopRequested: none,
  turnLogSize: none,
  requestRefused: none,
  socketChanged: none,
  socketChatAnswered: none
}

/** The hooks in effect; nothing by default. */
export const ChatHooks = Context.Reference<Service>("@convoke/core/ChatHooks", { defaultValue: () => noop })

/** Runs the hooks in order; a failing one is logged and the rest still run. */
const guarded = <A>(
  name: string,
  hooks: ReadonlyArray<(event: A) => Effect.Effect<void>>
): ((event: A) => Effect.Effect<void>) => {
  const safe = hooks.map(
    (hook) => (event: A) =>
      hook(event).pipe(Effect.catchCause((cause) => Effect.logWarning(`A ${name} hook failed`, cause)))
  )
  // Hooks run on every turn: chained directly, not through a loop effect.
  if (safe.length === 0) return none
  if (safe.length === 1) return safe[0]!
  return (event) => safe.reduce((all, hook) => Effect.andThen(all, hook(event)), Effect.void)
}

/** Runs several observers, in order, for every event. */
export const combine = (...observers: ReadonlyArray<Partial<Service>>): Service => {
  const pick = <K extends keyof Service>(key: K) =>
    observers.flatMap((observer) => (observer[key] === undefined ? [] : [observer[key]!])) as Array<
      Service[K]
    >
  return {
    conversationResolved: guarded("conversationResolved", pick("conversationResolved")),
    conversationFailed: guarded("conversationFailed", pick("conversationFailed")),
    metadataSent: guarded("metadataSent", pick("metadataSent")),
    firstToken: guarded("firstToken", pick("firstToken")),
    turnEnded: guarded("turnEnded", pick("turnEnded")),
    turnResumed: guarded("turnResumed", pick("turnResumed")),
    stopRequested: guarded("stopRequested", pick("stopRequested")),
    turnLogSize: guarded("turnLogSize", pick("turnLogSize")),
    requestRefused: guarded("requestRefused", pick("requestRefused")),
    socketChanged: guarded("socketChanged", pick("socketChanged")),
    socketChatAnswered: guarded("socketChatAnswered", pick("socketChatAnswered"))
  }
}
