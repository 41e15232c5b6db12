/**
 * The WebSocket protocol (`docs/websocket.md`): one socket, many turns. A
 * session reads the client's frames — `chat.send`, `chat.stop`,
 * `chat.resume`, `ping` — and runs each request on the same services as the
 * HTTP routes: a `chat.send` is `POST /api/v0.3/chat` with `"stream":true`
 * (`ChatService.produce`), a `chat.resume` is `GET …/stream`, a `chat.stop`
 * is `POST …/stop`. Only the framing differs: every turn's events are JSON
 * text frames tagged with the `request_id` the client chose, so turns
 * interleave on one socket.
 *
 * The binding (`NodeSocket`, on the `ws` library) owns the wire: framing,
 * UTF-8, frame size, pings. It hands the session a `Connection`; everything
 * the protocol decides — which frame means what, which error, which close
 * code — is decided here, once, for every binding.
 *
 * @since 0.3.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import type * as ApiRouter from "./ApiRouter.ts"
import { ChatConfig } from "./ChatConfig.ts"
import { type ApiError, InvalidRequest, RateLimited } from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatHooks } from "./ChatHooks.ts"
import * as ChatRequest from "./ChatRequest.ts"
import { ChatService } from "./ChatService.ts"
import type * as ChatStream from "./ChatStream.ts"
import * as ClientKind from "./ClientKind.ts"
import { makeOwnership } from "./ConversationHttp.ts"
import * as HttpError from "./HttpError.ts"
import type { Principal } from "./Identity.ts"
import * as RequestBody from "./RequestBody.ts"
import { RequestContext } from "./RequestContext.ts"
import type * as StreamSink from "./StreamSink.ts"

/** Close codes the protocol uses (RFC 6455 §7.4.1). */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  policyViolation: 1008,
  internalError: 1011
} as const

/** What the client sent: a text frame, a binary frame, or the end of the connection with its close code. */
export interface Receiver {
  readonly text: (data: string) => void
  readonly binary: () => void
  readonly closed: (code: number) => void
}

/** An open WebSocket as a session uses it; the binding makes one. */
export interface Connection {
  /** Queues a text frame, without waiting. */
  readonly write: (text: string) => void
  /** Whether the client is behind: frames wait in memory for it. */
  readonly behind: () => boolean
  /** Resolves once the client has caught up (at once when it is not behind). */
  readonly caughtUp: Effect.Effect<void>
  /** Closes the socket with a code and a reason; does nothing once closed. */
  readonly close: (code: number, reason: string) => void
  /** Starts delivering the client's frames (and those that came before) to the receiver. */
  readonly listen: (receiver: Receiver) => void
}

/** The settings of the protocol. */
export interface Settings {
  /** A socket with no frame from its client and no turn in flight for this long is closed (1000). */
  readonly idleTimeout: Duration.Duration
  /** How often the binding pings the client; a client that missed a ping is cut off. */
  readonly pingInterval: Duration.Duration
  /** Turns in flight on one socket; one more gets a 429 error frame. */
  readonly maxTurnsInFlight: number
  /** Invalid frames in a row before the socket is closed (1008). */
  readonly maxInvalidFrames: number
  /** At most this many frames within `floodWindow`; one more closes the socket (1008). */
  readonly maxFrames: number
  readonly floodWindow: Duration.Duration
}

/** The defaults. */
export const defaults: Settings = {
  idleTimeout: Duration.minutes(5),
  pingInterval: Duration.seconds(30),
  maxTurnsInFlight: 8,
  maxInvalidFrames: 10,
  maxFrames: 100,
  floodWindow: Duration.seconds(10)
}

/** The settings in effect; provide a value to change them. */
export const ChatSocketSettings = Context.Reference<Settings>("@convoke/core/ChatSocket/Settings", {
  defaultValue: () => defaults
})

/** Who a session acts for and how it counts their requests. */
export interface SessionOptions {
  readonly connection: Connection
  readonly principal: Principal
  readonly budget: ApiRouter.Budget["Service"]
}

/** What every client frame has. */
const Envelope = Schema.Struct({
  type: Schema.String,
  request_id: Schema.optionalKey(Schema.Unknown)
})

const StopFrame = Schema.Struct({ conversation_id: Schema.String })

const ResumeFrame = Schema.Struct({
  conversation_id: Schema.String,
  last_event_id: Schema.optionalKey(Schema.NullOr(Schema.String))
})

/** The server's answer to a request that failed before a turn started. */
export const errorFrame = (error: HttpError.ErrorResponse, requestId: string | undefined): string => {
  const retryAfter = error.headers?.["retry-after"]
  return JSON.stringify({
    type: "error",
    ...(requestId === undefined ? {} : { request_id: requestId }),
    status: error.status,
    error: error.body.error,
    ...(retryAfter === undefined ? {} : { retry_after: Number(retryAfter) })
  })
}

const invalid = (message: string) => HttpError.fromError(new InvalidRequest({ message }))

/** An invalid frame, with the request it names when it names one. */
class InvalidFrame {
  readonly error: InvalidRequest
  readonly requestId: string | undefined
  constructor(error: InvalidRequest, requestId: string | undefined) {
    this.error = error
    this.requestId = requestId
  }
}

const tagged = (requestId: string | undefined) => (error: InvalidRequest) =>
  new InvalidFrame(error, requestId)

const requestIdOf = (raw: unknown): Effect.Effect<string, InvalidRequest> =>
  typeof raw === "string" && raw.length >= 1 && raw.length <= 128
    ? Effect.succeed(raw)
    : Effect.fail(new InvalidRequest({ message: "request_id: must be a string of 1 to 128 characters" }))

const required = (requestId: string | undefined, type: string): Effect.Effect<string, InvalidRequest> =>
  requestId === undefined
    ? Effect.fail(
        new InvalidRequest({ message: `request_id: ${type} needs one (a string of 1 to 128 characters)` })
      )
    : Effect.succeed(requestId)

/** A turn's frames for the request `requestId`: the SSE events with its id, `done` for `[DONE]`. */
const encodingFor = (requestId: string): ChatStream.Encoding<string> => ({
  metadata: (event) => JSON.stringify({ ...event, request_id: requestId }),
  // The binding pings the socket itself; an empty frame is never sent (see `sinkOf`).
  heartbeat: "",
  entry: (turnId, { seq, event }) =>
    JSON.stringify({
      ...(event.type === "done" ? { type: "done" } : event),
      request_id: requestId,
      event_id: ChatEvent.eventId(turnId, seq)
    }),
  cutShort: (event) => [
    JSON.stringify({ ...event, request_id: requestId }),
    JSON.stringify({ type: "done", request_id: requestId })
  ]
})

/**
 * A turn's frames go straight to the socket. A frame waits while the client
 * is behind, which pauses the turn's delivery (and, through the turn log's
 * bounds, the model) instead of growing memory; the metadata event and the
 * last frames go at once, since a turn has only a few of them.
 */
const sinkOf = (connection: Connection): StreamSink.Sink<string> => ({
  send: (frame) =>
    connection.behind()
      ? Effect.andThen(connection.caughtUp, write(connection, frame))
      : write(connection, frame),
  trySend: (frame) => {
    if (frame !== "") connection.write(frame)
    return true
  },
  close: (frames) =>
    Effect.sync(() => {
      for (const frame of frames) connection.write(frame)
    })
})

const write = (connection: Connection, frame: string) => Effect.sync(() => connection.write(frame))

/** The session runner, built once from the services in context. */
export const make = Effect.gen(function* () {
  const chat = yield* ChatService
  const config = yield* ChatConfig
  const hooks = yield* ChatHooks
  const settings = yield* ChatSocketSettings
  const { ownedById } = yield* makeOwnership
  const limits = { maxJsonDepth: config.maxJsonDepth, maxMessageCharacters: config.maxMessageCharacters }
  // The body rules of HTTP, in the words of a frame.
  const decode =
    <A>(schema: Schema.Decoder<A>) =>
    (text: string) =>
      Effect.mapError(
        RequestBody.decodeJson(schema, limits)(text),
        (error) => new InvalidRequest({ message: error.message.replace(/^Request body/, "Frame") })
      )

  /** Runs a session until its socket closes. */
  const run = ({ connection, principal, budget }: SessionOptions) =>
    Effect.gen(function* () {
      const requestContext = yield* RequestContext
      const client = ClientKind.detect((yield* HttpServerRequest.HttpServerRequest).headers)
      const socketRequestId = requestContext.requestId
      const userId = principal.userId
      // Another user's conversation answers as a missing one, and the attempt is audited with this request.
      const owned = (conversationId: string) =>
        Effect.provideService(ownedById(userId, conversationId), RequestContext, requestContext)
      const clock = yield* Clock.Clock
      const scope = yield* Scope.make()
      const incoming = yield* Queue.unbounded<string, Cause.Done>()
      const inFlight = new Map<string, Fiber.Fiber<void>>()
      const frameTimes: Array<number> = []
      const floodWindowMillis = Duration.toMillis(settings.floodWindow)
      let invalidInARow = 0
      let lastFrameAt = clock.currentTimeMillisUnsafe()
      let closeCode: number | undefined

      const send = (frame: string) => write(connection, frame)
      const close = (code: number, reason: string) =>
        Effect.sync(() => {
          closeCode ??= code
          connection.close(code, reason)
        })
      const refuse = (error: HttpError.ErrorResponse, requestId: string | undefined) =>
        send(errorFrame(error, requestId))

      // Frames are counted as they arrive, so a flood is cut off before it is queued.
      connection.listen({
        text: (data) => {
          const now = clock.currentTimeMillisUnsafe()
          lastFrameAt = now
          frameTimes.push(now)
          if (frameTimes.length > settings.maxFrames) {
            if (now - frameTimes.shift()! < floodWindowMillis) {
              closeCode ??= CloseCode.policyViolation
              connection.close(CloseCode.policyViolation, "too many frames")
              return
            }
          }
          Queue.offerUnsafe(incoming, data)
        },
        binary: () => {
          closeCode ??= CloseCode.unsupportedData
          connection.close(CloseCode.unsupportedData, "binary frames are not supported")
        },
        closed: (code) => {
          closeCode ??= code
          Queue.endUnsafe(incoming)
        }
      })
      yield* hooks.socketChanged({ userId, requestId: socketRequestId })

      // A defect in one request ends the socket, which has no other way to say so.
      const unexpected = (cause: Cause.Cause<unknown>) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.void
          : Effect.andThen(
              Effect.logError("A WebSocket request failed unexpectedly", cause),
              close(CloseCode.internalError, "internal error")
            )

      /** The error frame of a request that failed before its turn started. */
      const failed = (requestId: string | undefined) => (error: ApiError) =>
        refuse(HttpError.fromError(error), requestId)

      /** Counts a `chat.send` as the chat endpoint's requests are counted, by client kind and status. */
      const chatAnswered = (requestId: string | undefined) => (status: number) =>
        hooks.socketChatAnswered({ userId, requestId: labelOf(requestId), client, status })

      /** The request id of logs and hooks: the socket's, and the frame's. */
      const labelOf = (requestId: string | undefined) =>
        requestId === undefined ? socketRequestId : `${socketRequestId}/${requestId}`

      /**
       * Starts a request that streams a turn, on a fiber of its own tracked by
       * its id until it ends. It is counted against the socket's turns and,
       * with an in-flight slot, against the user's budget (HTTP and WebSocket
       * together); `open` makes its producer, or fails before anything streams.
       */
      const startTurn = (
        requestId: string,
        open: Effect.Effect<Option.Option<StreamSink.Producer<string>>, ApiError>,
        answered: (status: number) => Effect.Effect<void> = () => Effect.void
      ): Effect.Effect<void> => {
        const refused = (error: HttpError.ErrorResponse) =>
          Effect.andThen(refuse(error, requestId), answered(error.status))
        if (inFlight.has(requestId)) {
          return refused(invalid(`request_id ${JSON.stringify(requestId)} is already in flight`))
        }
        if (inFlight.size >= settings.maxTurnsInFlight) {
          return refused(
            HttpError.fromError(
              new RateLimited({
                message: `At most ${settings.maxTurnsInFlight} turns in flight on one socket`,
                scope: "concurrent",
                retryAfterSeconds: 1
              })
            )
          )
        }
        const turn = Effect.gen(function* () {
          const admission = yield* budget({ inFlight: true })
          yield* Effect.addFinalizer(() => admission.release)
          const produce = yield* open
          yield* answered(200)
          if (Option.isSome(produce)) yield* produce.value(sinkOf(connection))
        }).pipe(
          Effect.scoped,
          Effect.catch((error) => refused(HttpError.fromError(error))),
          Effect.catchCause(unexpected),
          Effect.ensuring(Effect.sync(() => inFlight.delete(requestId)))
        )
        return Effect.map(Effect.forkIn(turn, scope), (fiber) => {
          inFlight.set(requestId, fiber)
        })
      }

      const chatSend = (requestId: string, request: ChatRequest.ChatRequest) =>
        startTurn(
          requestId,
          Effect.map(
            chat.produce(
              {
                principal,
                request,
                receivedAtMillis: clock.currentTimeMillisUnsafe(),
                requestId: labelOf(requestId),
                transport: "websocket"
              },
              encodingFor(requestId)
            ),
            Option.some
          ),
          chatAnswered(requestId)
        )

      const chatResume = (
        requestId: string,
        conversationId: string,
        after: { readonly turnId: string; readonly seq: number } | undefined
      ) =>
        startTurn(
          requestId,
          Effect.gen(function* () {
            const report = (id: string, outcome: "replayed" | "no_turn" | "not_found") =>
              hooks.turnResumed({ userId, requestId: labelOf(requestId), conversationId: id, outcome })
            const conversation = yield* owned(conversationId).pipe(
              Effect.tapError(() => report(conversationId, "not_found"))
            )
            const produce = yield* chat.produceResume(
              { userId, conversationId: conversation.id, after },
              encodingFor(requestId)
            )
            yield* report(conversation.id, Option.isSome(produce) ? "replayed" : "no_turn")
            if (Option.isNone(produce)) {
              yield* send(
                JSON.stringify({ type: "no_turn", request_id: requestId, conversation_id: conversation.id })
              )
            }
            return produce
          })
        )

      // A stop is counted like any request but takes no turn slot, so a user with every slot taken can still stop.
      const chatStop = (requestId: string | undefined, conversationId: string) =>
        Effect.gen(function* () {
          const admission = yield* budget({})
          yield* admission.release
          const conversation = yield* owned(conversationId)
          const stopped = yield* chat.stop({ userId, conversationId: conversation.id })
          yield* hooks.stopRequested({
            userId,
            requestId: labelOf(requestId),
            conversationId: conversation.id,
            running: Option.isSome(stopped)
          })
          yield* send(
            JSON.stringify({
              type: "stopped",
              ...(requestId === undefined ? {} : { request_id: requestId }),
              conversation_id: conversation.id,
              turn_id: Option.getOrNull(stopped)
            })
          )
        }).pipe(Effect.catch(failed(requestId)))

      /** Reads one frame and starts what it asks for; fails with `InvalidRequest` when it is not a valid frame. */
      const dispatch = (text: string) =>
        Effect.gen(function* () {
          const { type, request_id: rawId } = yield* decode(Envelope)(text)
          if (type === "ping") return yield* send(PONG)
          const requestId = rawId === undefined ? undefined : yield* requestIdOf(rawId)
          switch (type) {
            case "chat.send": {
              const [id, request] = yield* Effect.gen(function* () {
                const id = yield* required(requestId, type)
                // The chat endpoint's own body rules; the frame's other keys are not part of the body.
                return [id, yield* Effect.mapError(ChatRequest.parse(text, limits), tagged(id))] as const
              }).pipe(Effect.tapError(() => chatAnswered(requestId)(400)))
              return yield* chatSend(id, request)
            }
            case "chat.resume": {
              const id = yield* required(requestId, type)
              const frame = yield* Effect.mapError(decode(ResumeFrame)(text), tagged(id))
              const raw = frame.last_event_id ?? ""
              const after = raw === "" ? undefined : ChatEvent.parseEventId(raw)
              if (raw !== "" && after === undefined) {
                return yield* Effect.fail(
                  tagged(id)(
                    new InvalidRequest({
                      message: "last_event_id must be the id of an event this server sent (<turn_id>:<seq>)"
                    })
                  )
                )
              }
              return yield* chatResume(id, frame.conversation_id, after)
            }
            case "chat.stop": {
              const frame = yield* Effect.mapError(decode(StopFrame)(text), tagged(requestId))
              return yield* chatStop(requestId, frame.conversation_id)
            }
            default:
              return yield* Effect.fail(
                tagged(requestId)(
                  new InvalidRequest({
                    message: `Unknown frame type ${JSON.stringify(type.slice(0, 64))}: expected chat.send, chat.stop, chat.resume or ping`
                  })
                )
              )
          }
        })

      /** Handles one frame; `false` when it was invalid. */
      const handle = (text: string): Effect.Effect<boolean> =>
        dispatch(text).pipe(
          Effect.as(true),
          Effect.catch((failure) =>
            Effect.as(
              refuse(
                HttpError.fromError(failure instanceof InvalidFrame ? failure.error : failure),
                failure instanceof InvalidFrame ? failure.requestId : undefined
              ),
              false
            )
          )
        )

      const idleMillis = Duration.toMillis(settings.idleTimeout)
      // Closes a socket that has been quiet, with nothing in flight, for the idle timeout.
      const idleWatch = Effect.gen(function* () {
        while (true) {
          const quietFor = clock.currentTimeMillisUnsafe() - lastFrameAt
          if (inFlight.size === 0 && quietFor >= idleMillis) {
            return yield* close(CloseCode.normal, "idle")
          }
          // Asleep until the quiet time could be up; with turns in flight, a whole timeout at a time.
          yield* Effect.sleep(
            Duration.millis(inFlight.size === 0 ? Math.max(idleMillis - quietFor, 1) : idleMillis)
          )
        }
      })

      // The server is shutting down: each turn ends with its error and done frames, then the socket closes.
      const shutdownWatch = Effect.gen(function* () {
        yield* chat.awaitShutdown
        yield* Effect.forEach([...inFlight.values()], (fiber) => Effect.asVoid(Fiber.await(fiber)), {
          concurrency: "unbounded",
          discard: true
        })
        yield* close(CloseCode.goingAway, "server shutting down")
      })

      yield* Effect.forkIn(idleWatch, scope)
      yield* Effect.forkIn(shutdownWatch, scope)

      const loop: Effect.Effect<void> = Effect.gen(function* () {
        while (true) {
          const next = yield* Effect.result(Queue.take(incoming))
          if (next._tag === "Failure") return
          const valid = yield* handle(next.success)
          invalidInARow = valid ? 0 : invalidInARow + 1
          if (invalidInARow >= settings.maxInvalidFrames) {
            return yield* close(CloseCode.policyViolation, "too many invalid frames")
          }
        }
      })

      yield* loop.pipe(
        Effect.catchCause(unexpected),
        // The client left (or the socket was closed): its turns go on for the disconnect grace.
        Effect.ensuring(Scope.close(scope, Exit.void)),
        Effect.ensuring(
          Effect.suspend(() =>
            hooks.socketChanged({ userId, requestId: socketRequestId, code: closeCode ?? 1006 })
          )
        )
      )
    })

  return { run }
})

const PONG = JSON.stringify({ type: "pong" })
