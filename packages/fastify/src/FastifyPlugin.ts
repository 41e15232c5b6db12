/**
 * Convoke as a Fastify plugin:
 *
 * ```ts
 * await fastify.register(FastifyPlugin.plugin, { prefix: "/chat", layer })
 * ```
 *
 * It serves the whole API under the prefix — every path the core's route
 * table claims — through one wildcard route; a path the core does not claim
 * goes to the app's own not-found handler. The plugin is encapsulated (no
 * `fastify-plugin`): its content-type parser and route apply to it only, so
 * the app's JSON parsing, hooks and other routes are untouched (Fastify
 * prefers any route of the app to a wildcard), and `prefix` works as for any
 * plugin.
 *
 * It streams by hijacking the reply and handing the raw request and response
 * to the core's Node binding, which already does back-pressure (`drain`),
 * flushing and disconnects once for every Node framework. A reply stream
 * (`reply.send(stream)`) would go through `onSend` hooks instead, where a
 * compression plugin configured for `text/event-stream` would buffer events.
 * Headers that hooks set on the reply (CORS, security headers) are copied to
 * the raw response first, so hijacking does not lose them.
 *
 * The WebSocket route (`GET /api/v0.3/ws`) is served on `fastify.server`'s
 * `upgrade` event, under the same prefix, with no other plugin needed.
 *
 * @since 0.1.0
 */
import type { Readable } from "node:stream"
import { ChatHttp } from "@convoke/core"
import { NodeHandler, NodeSocket } from "@convoke/core/node"
import * as Cause from "effect/Cause"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type { FastifyBaseLogger, FastifyPluginAsync } from "fastify"

/** Options: a running app you manage, or the layers to build one the plugin manages. */
export type Options =
  | {
      /** An app you built with `ChatHttp.makeApp`; you call its `shutdown` and `dispose`. */
      readonly app: ChatHttp.App
    }
  | {
      /**
       * Store, model and identity (and optional settings). The plugin builds the
       * app when registered, logs through Fastify's logger, ends open streams
       * on `fastify.close()` and then releases the layers.
       */
      readonly layer: Layer.Layer<ChatHttp.Services, unknown>
    }

const LEVELS = {
  Fatal: "fatal",
  Error: "error",
  Warn: "warn",
  Info: "info",
  Debug: "debug",
  Trace: "trace"
} as const

/** An Effect logger that writes to a Fastify (pino) logger. */
export const loggerFor = (log: FastifyBaseLogger) =>
  Logger.make(({ logLevel, message, cause }) => {
    const level = LEVELS[logLevel as keyof typeof LEVELS]
    if (level === undefined) return
    const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
    log[level](cause.reasons.length > 0 ? { err: Cause.squash(cause) } : {}, text)
  })

// OPTIONS for CORS preflights, which the core answers; HEAD is served by the core's GET routes.
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

/** The plugin: register it with `fastify.register(plugin, { prefix, app | layer })`. */
export const plugin: FastifyPluginAsync<Options> = async (fastify, options) => {
  let app: ChatHttp.App
  if ("app" in options) {
    app = options.app
  } else {
    app = await ChatHttp.makeApp(Layer.merge(options.layer, Logger.layer([loggerFor(fastify.log)])))
    fastify.addHook("preClose", async () => {
      await app.shutdown()
    })
    fastify.addHook("onClose", async () => {
      await app.dispose()
    })
  }
  // The core reads the body itself, so its limit (413), content types (415)
  // and JSON sent as text/plain apply exactly as everywhere else. The stream
  // handed over has been through `preParsing` hooks (request decompression).
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser("*", (_request, payload, done) => done(null, payload))
  const prefix = fastify.prefix
  const url = (request: { readonly url?: string | undefined }) => request.url?.slice(prefix.length)
  const handle = NodeHandler.toNodeHandler(app, { url })
  // WebSockets (`GET /api/v0.3/ws`): Fastify does not upgrade, so the upgrade is taken on its server.
  const detach = NodeSocket.attach(fastify.server, app, { prefix })
  fastify.addHook("onClose", async () => detach())
  fastify.route({
    method: METHODS,
    url: "/*",
    exposeHeadRoute: false,
    handler: (request, reply) => {
      if (!app.http.claims(url(request.raw) ?? "/")) return reply.callNotFound()
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) reply.raw.setHeader(name, value)
      }
      reply.hijack()
      return handle(request.raw, reply.raw, request.body as Readable | undefined)
    }
  })
}
