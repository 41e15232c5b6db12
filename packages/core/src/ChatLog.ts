/**
 * Structured logs and traces of the chat endpoint: one line per request and
 * one per chat turn, with the ids and durations an operator searches by —
 * request id, conversation id, user id, client kind, status, outcome — and
 * never the content of a message.
 *
 * The lines are ordinary Effect logs with annotations, so the logger decides
 * their format: `Logger.consoleJson` gives one JSON object per line, e.g.
 *
 * ```json
 * {"message":"Chat turn ended","level":"INFO","timestamp":"…","annotations":{"requestId":"…","userId":"alice","conversationId":"…","outcome":"complete","durationMillis":412,"stream":true},…}
 * ```
 *
 * Each request also runs in a server span (`POST /api/v0.3/chat`) carrying
 * the request id, client kind and status, which a tracer such as Effect's
 * `OtlpTracer` exports; with no tracer installed nothing leaves the process.
 *
 * The request id is the caller's `X-Request-Id` when it is a sane token, else
 * a fresh UUID (`RequestContext`), so the access line, the turn lines
 * and the response's `x-request-id` header all carry the same id.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import type * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import { pathOf } from "./ApiRouter.ts"
import * as ChatExtension from "./ChatExtension.ts"
import type * as ChatHooks from "./ChatHooks.ts"
import { CHAT_PATH } from "./ChatRoute.ts"
import * as ClientKind from "./ClientKind.ts"
import { RequestContext } from "./RequestContext.ts"

const context = (event: ChatHooks.TurnContext) => ({
  requestId: event.requestId,
  userId: event.userId,
  stream: event.stream
})

/** A log line at `level`; with that level off, its annotations are not even built. */
const line = (level: LogLevel.Severity, message: string, annotations: () => Record<string, unknown>) =>
  Effect.flatMap(LogLevel.isEnabled(level), (enabled) =>
    enabled ? Effect.logWithLevel(level)(message).pipe(Effect.annotateLogs(annotations())) : Effect.void
  )

/** The chat-turn observer: resolutions, failures and turn ends, without message content. */
export const observer: ChatHooks.Service = {
  conversationResolved: (event) =>
    line("Info", "Conversation resolved", () => ({
      ...context(event),
      conversationId: event.conversationId,
      source: event.source,
      created: event.created,
      durationMillis: event.durationMillis
    })),
  conversationFailed: (event) =>
    line("Warn", "Conversation could not be resolved", () => ({
      ...context(event),
      reason: event.reason,
      durationMillis: event.durationMillis
    })),
  metadataSent: (event) =>
    line("Debug", "Metadata event sent", () => ({
      ...context(event),
      conversationId: event.conversationId,
      temporary: event.temporary,
      latencyMillis: event.latencyMillis
    })),
  firstToken: (event) =>
    line("Debug", "Model produced its first text", () => ({
      ...context(event),
      conversationId: event.conversationId,
      latencyMillis: event.latencyMillis
    })),
  turnEnded: (event) =>
    line(
      event.outcome === "complete" || event.outcome === "client_closed" || event.outcome === "cancelled"
        ? "Info"
        : "Warn",
      "Chat turn ended",
      () => ({
        ...context(event),
        conversationId: event.conversationId,
        outcome: event.outcome,
        durationMillis: event.durationMillis
      })
    ),
  turnResumed: (event) =>
    line("Info", "Turn resume asked for", () => ({
      userId: event.userId,
      requestId: event.requestId,
      conversationId: event.conversationId,
      outcome: event.outcome
    })),
  stopRequested: (event) =>
    line("Info", "Turn stop asked for", () => ({
      userId: event.userId,
      requestId: event.requestId,
      conversationId: event.conversationId,
      running: event.running
    })),
  turnLogSize: () => Effect.void,
  requestRefused: () => Effect.void,
  socketChatAnswered: () => Effect.void,
  socketChanged: (event) =>
    event.code === undefined
      ? Effect.void
      : line("Info", "WebSocket closed", () => ({
          userId: event.userId,
          requestId: event.requestId,
          code: event.code
        }))
}

/**
 * Gives every request an id, runs it in a server span, and logs one line when
 * its response starts (for a stream, the turn's own line says how it ended).
 */
export const middleware = (app: ChatExtension.App): ChatExtension.App =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const clock = yield* Clock.Clock
    const { requestId, receivedAtMillis: startedAt } = yield* RequestContext
    const path = pathOf(request.url)
    const client = ClientKind.detect(request.headers)
    const annotations = { requestId, method: request.method, path, client }
    // With tracing off, a span would still capture a stack trace per request.
    const traced = yield* References.TracerEnabled
    const handled = app.pipe(
      Effect.tap((response) => {
        // Scrapes and health checks that succeed are routine: debug level.
        const logged = line(
          path === CHAT_PATH || response.status >= 400 ? "Info" : "Debug",
          "Request handled",
          () => ({ status: response.status, durationMillis: clock.currentTimeMillisUnsafe() - startedAt })
        )
        return traced
          ? Effect.andThen(
              Effect.annotateCurrentSpan({ "http.response.status_code": response.status }),
              logged
            )
          : logged
      }),
      Effect.onInterrupt(() => Effect.logInfo("Request abandoned by the client")),
      Effect.annotateLogs(annotations)
    )
    if (!traced) return yield* handled
    return yield* Effect.withSpan(handled, `${request.method} ${path}`, {
      kind: "server",
      attributes: {
        "http.request.method": request.method,
        "url.path": path,
        "convoke.request_id": requestId,
        "convoke.client": client
      }
    })
  })

/** Logs every request and chat turn, and traces every request; an extension, so it composes by merging. */
export const layer = (): Layer.Layer<never> => ChatExtension.layer({ hooks: observer, middleware })
