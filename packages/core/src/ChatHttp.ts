/**
 * The HTTP surface of Convoke — `POST /api/v0.3/chat` and `GET /health` — as
 * one Effect HTTP application, and as a web-standard `Request → Response`
 * handler that every adapter (Node, Express, Fastify, Lambda) builds on.
 *
 * @since 0.1.0
 */
import { Clock, type Context, Effect, Exit, Layer, Scope, Stream } from "effect"
import { HttpEffect, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { ChatConfig } from "./ChatConfig.ts"
import * as ChatEvent from "./ChatEvent.ts"
import * as ChatExtension from "./ChatExtension.ts"
import { ChatRateLimit } from "./ChatRateLimit.ts"
import * as ChatRequest from "./ChatRequest.ts"
import type { StreamItem } from "./ChatService.ts"
import * as ChatService from "./ChatService.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as ConversationCleanup from "./ConversationCleanup.ts"
import * as ConversationHttp from "./ConversationHttp.ts"
import type * as ConversationOutbox from "./ConversationOutbox.ts"
import { ConversationStore } from "./ConversationStore.ts"
import * as HttpError from "./HttpError.ts"
import * as HttpSecurity from "./HttpSecurity.ts"
import { Identity } from "./Identity.ts"
import { LanguageModel } from "./LanguageModel.ts"
import * as RequestBody from "./RequestBody.ts"
import * as RequestId from "./RequestId.ts"

/** The path of the chat endpoint. */
export const CHAT_PATH = "/api/v0.3/chat"

/**
 * Every path the application answers. Adapters mounted beside an app's own
 * routes hand anything else back to the framework.
 */
export const PATHS: ReadonlyArray<string> = [CHAT_PATH, "/health"]

/** A web-standard request handler. */
export type WebHandler = (request: Request) => Promise<Response>

/** The services the HTTP application needs. */
export type Requirements = ChatService.ChatService | Identity | LanguageModel | ConversationStore

/**
 * Encodes a chat stream as SSE bytes, one chunk per event, ending with
 * `[DONE]`. (`ChatService.sse` produces the same bytes directly.)
 */
export const encodeSse = (events: Stream.Stream<StreamItem>): Stream.Stream<Uint8Array> =>
  events.pipe(Stream.map(ChatService.sseFrame), Stream.concat(Stream.succeed(ChatService.DONE_FRAME)))

/** The caller's `X-Request-Id` when it is a sane token, else a fresh UUID (`RequestId.of`). */
export const requestIdOf = RequestId.of

/** The id of a request, the same every time it is asked for (`RequestId.get`). */
export const requestIdFor = RequestId.get

/** The routes, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const chat = yield* ChatService.ChatService
  const identity = yield* Identity
  const model = yield* LanguageModel
  const store = yield* ConversationStore
  const config = yield* ChatConfig
  const rateLimit = yield* ChatRateLimit

  const postChat = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const receivedAtMillis = yield* Clock.currentTimeMillis
    const requestId = RequestId.get(request)
    const address = ClientAddress.get(request)
    // A failed authentication spends the address's budget, so guessing keys is throttled too.
    const principal = yield* identity
      .authenticate(request.headers)
      .pipe(Effect.tapError(() => rateLimit.rejected({ address })))
    // Before the body is read or a conversation touched: a 429 writes nothing. The
    // in-flight slot is released when the request scope closes, which for a stream
    // is when the stream ends — completion, failure or disconnect.
    const admission = yield* rateLimit.admit({ principal, address })
    yield* Effect.addFinalizer(() => admission.release)
    const body = yield* ChatRequest.read({
      ...RequestBody.read(request, config.maxBodyBytes),
      limits: { maxJsonDepth: config.maxJsonDepth, maxMessageCharacters: config.maxMessageCharacters }
    })
    const input = { principal, request: body, receivedAtMillis, requestId }
    if (body.stream === true) {
      return HttpServerResponse.stream(yield* chat.sse(input), {
        headers: { ...ChatEvent.SSE_HEADERS, ...admission.headers, "x-request-id": requestId }
      })
    }
    return HttpServerResponse.jsonUnsafe(yield* chat.complete(input), {
      headers: { ...admission.headers, "x-request-id": requestId }
    })
  })

  // Present only when the application runs the cleanup job.
  const cleanup = yield* Effect.serviceOption(ConversationCleanup.ConversationCleanup)

  const health = Effect.sync(() => {
    const latest = cleanup._tag === "Some" ? cleanup.value.latest() : undefined
    return HttpServerResponse.jsonUnsafe({
      status: "ok",
      model: model.name,
      store: store.name,
      identity: identity.name,
      outbox: chat.outbox.stats(),
      ...(latest === undefined
        ? {}
        : {
            cleanup: {
              ran_at: latest.ranAt.toISOString(),
              deleted: latest.deleted,
              abandonment_ratio: latest.abandonmentRatio
            }
          })
    })
  })

  const methodNotAllowed = Effect.succeed(
    HttpError.plain(405, "method_not_allowed", "Use POST", { allow: "POST" })
  )

  return [
    ...(yield* ConversationHttp.routes),
    HttpRouter.route("POST", CHAT_PATH, postChat),
    HttpRouter.route("GET", "/health", health),
    ...(["GET", "PUT", "PATCH", "DELETE"] as const).map((method) =>
      HttpRouter.route(method, CHAT_PATH, methodNotAllowed)
    )
  ]
})

/**
 * The whole application as one HTTP effect: routes plus the error mapping,
 * with the `ChatExtension`s in context (extra routes, middleware). Needs the
 * services; build it once, serve it many times.
 */
export const makeHttpEffect = Effect.gen(function* () {
  const extensions = ChatExtension.fromContext(yield* Effect.context<never>())
  const router = yield* HttpRouter.toHttpEffect(
    Layer.mergeAll(
      HttpRouter.addAll(routes),
      ...extensions.map((extension) => HttpRouter.addAll(extension.routes ?? []))
    )
  )
  const security = HttpSecurity.middleware(yield* HttpSecurity.HttpSecurity)
  return security(ChatExtension.applyMiddleware(HttpError.catchAll(router), extensions))
})

/** The HTTP effect with the services it needs: what bindings serve, one request at a time. */
export interface HttpApp {
  readonly effect: Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    never,
    Scope.Scope | HttpServerRequest.HttpServerRequest
  >
  readonly context: Context.Context<never>
}

/** The application with the services in context, for a binding to serve (see `@convoke/core/node`). */
export const makeHttpApp: Effect.Effect<HttpApp, never, Requirements | Scope.Scope> = Effect.gen(
  function* () {
    const effect = yield* makeHttpEffect
    const context = yield* Effect.context<Requirements>()
    return {
      effect: effect as HttpApp["effect"],
      context: context as Context.Context<never>
    }
  }
)

/** A web handler serving an application. */
export const toWebHandler = (app: HttpApp): WebHandler =>
  HttpEffect.toWebHandlerWith<never, Scope.Scope | HttpServerRequest.HttpServerRequest>(app.context)(
    app.effect
  ) as WebHandler

/** Builds a web handler from the services in context. */
export const makeWebHandler: Effect.Effect<WebHandler, never, Requirements | Scope.Scope> = Effect.map(
  makeHttpApp,
  toWebHandler
)

/** A running Convoke application: its handler and how to stop it. */
export interface App {
  /** The web-standard handler. */
  readonly handler: WebHandler
  /**
   * The application itself, which `NodeHandler.toNodeHandler(app)` serves
   * natively: no web `Request` or `Response` is built per request.
   */
  readonly http: HttpApp
  /** Ends open streams with an error event and `[DONE]`; new requests get 503. */
  readonly shutdown: () => Promise<void>
  /** Releases every resource of the layers (database connections, servers). */
  readonly dispose: () => Promise<void>
}

/**
 * Builds the application from a layer that provides the store, the model and
 * the identity (the chat service is added here). Resolves once every layer is
 * built, so a database that cannot start fails here, not on the first request.
 */
export const makeApp = async <A, E>(
  layer: Layer.Layer<ConversationStore | LanguageModel | Identity | A, E>,
  options: { readonly outbox?: ConversationOutbox.Options | undefined } = {}
): Promise<App> => {
  const scope = Scope.makeUnsafe()
  const full = Layer.provideMerge(
    ChatService.layerWith(options),
    Layer.provideMerge(ChatExtension.layerHooks, layer)
  )
  try {
    // The layers live in `scope` until `dispose`: their connections and
    // servers must outlive this function.
    const { http, handler, chat } = await Effect.runPromise(
      Effect.gen(function* () {
        const context = yield* Layer.buildWithScope(full, scope)
        return yield* Effect.gen(function* () {
          const http = yield* makeHttpApp
          const chat = yield* ChatService.ChatService
          return { http, handler: toWebHandler(http), chat }
        }).pipe(Effect.provideContext(context), Scope.provide(scope))
      })
    )
    let disposing: Promise<void> | undefined
    return {
      handler,
      http,
      shutdown: () => Effect.runPromise(chat.shutdown),
      dispose: () => (disposing ??= Effect.runPromise(Scope.close(scope, Exit.void)))
    }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}
