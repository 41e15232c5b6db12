/**
 * Extensions of a Convoke application: extra routes served beside the chat
 * endpoint (`GET /metrics`), middleware that sees every request and its final
 * response (request counters, access logs, traces), and chat-turn observers
 * (`ChatHooks`).
 *
 * Each `layer` adds one extension under a key of its own, so extensions
 * compose by merging layers — none replaces another:
 *
 * ```ts
 * ChatHttp.makeApp(Layer.mergeAll(store, model, identity, ChatMetrics.layer(), ChatLog.layer()))
 * ```
 *
 * An application with no extension has no extra route, no middleware and the
 * hooks it was given: the mechanism itself costs nothing.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import type * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as ApiRouter from "./ApiRouter.ts"
import * as ChatHooks from "./ChatHooks.ts"
import type { RequestContext } from "./RequestContext.ts"

/** The whole HTTP application as an effect: every error is already a response. */
export type App = Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  HttpServerRequest.HttpServerRequest | RequestContext | Scope.Scope
>

/** One extension; every part is optional. */
export interface Extension {
  /**
   * Routes added to the API's table; their failures get the common error
   * body. Like every route, they are authenticated and rate-limited by the
   * router unless they say they are `public`.
   */
  readonly routes?: ReadonlyArray<ApiRouter.Route<RequestContext>> | undefined
  /**
   * Wraps the whole application, outside the error mapping, so it sees the
   * status every client sees. Extensions are applied in context order, the
   * first innermost.
   */
  readonly middleware?: ((app: App) => App) | undefined
  /** Observes chat turns, after the `ChatHooks` provided directly. */
  readonly hooks?: Partial<ChatHooks.Service> | undefined
}

const KEY_PREFIX = "@convoke/core/ChatExtension/"
let nextKey = 0

/** Adds an extension to the application this layer is part of. */
export const layer = (extension: Extension): Layer.Layer<never> =>
  Layer.succeedContext(Context.makeUnsafe<never>(new Map([[`${KEY_PREFIX}${++nextKey}`, extension]])))

/** The extensions in a context, in the order they were added. */
export const fromContext = (context: Context.Context<never>): ReadonlyArray<Extension> => {
  const extensions: Array<Extension> = []
  for (const [key, value] of context.mapUnsafe) {
    if (key.startsWith(KEY_PREFIX)) extensions.push(value as Extension)
  }
  return extensions
}

/** Applies every middleware to an application, first extension innermost. */
export const applyMiddleware = (app: App, extensions: ReadonlyArray<Extension>): App =>
  extensions.reduce((wrapped, extension) => extension.middleware?.(wrapped) ?? wrapped, app)

/**
 * Provides `ChatHooks` that run the hooks given directly, then every
 * extension's. `ChatHttp.makeApp` applies it; apply it yourself beneath
 * `ChatService.layer` when you build the service by hand.
 */
export const layerHooks: Layer.Layer<never> = Layer.effect(
  ChatHooks.ChatHooks,
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const given = Context.get(context, ChatHooks.ChatHooks)
    const observers = fromContext(context).flatMap((extension) =>
      extension.hooks === undefined ? [] : [extension.hooks]
    )
    if (observers.length === 0) return given
    return ChatHooks.combine(...(given === ChatHooks.noop ? [] : [given]), ...observers)
  })
) as Layer.Layer<never>
