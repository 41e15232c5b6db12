/**
 * The reference server's metrics, logs and traces, chosen from settings:
 * Prometheus `/metrics` on the chat port, on an admin port of its own (with
 * the details of `/health`), or off;
 * request and turn logs, human-readable or one JSON object per line; OTLP
 * trace export when an endpoint is configured.
 */
import type { Server as HttpServer } from "node:http"
import type { AddressInfo } from "node:net"
import { type ChatError, ChatHttp, ChatLog, ChatMetrics, Health } from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import { PgConversationStatistics } from "@convoke/store-pg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import type { Settings } from "./Settings.ts"

// Not imported: an ES import of `node:http` loads undici (see `NodeHandler` in `@convoke/core`).
const { createServer } = process.getBuiltinModule("node:http")

/** What the server adds to its application for observability. */
export interface Observability {
  /** Fails to build only when the abandonment gauge's database cannot be reached. */
  readonly layer: Layer.Layer<never, ChatError.StoreUnavailable>
  readonly metrics: ChatMetrics.ChatMetrics | undefined
  /** Banner lines. */
  readonly summary: ReadonlyArray<readonly [string, string]>
}

const loggerLayer = (format: Settings["logFormat"]): Layer.Layer<never> => {
  switch (format) {
    case "json":
      return Logger.layer([Logger.consoleJson])
    case "pretty":
      return Layer.empty
    case "off":
      // Request and turn lines are Info; warnings and errors still show.
      return Layer.succeed(References.MinimumLogLevel, "Warn")
  }
}

/** Loaded only when an endpoint is configured: the exporter and its HTTP client stay out of a server without one. */
const tracerLayer = (otlpUrl: string): Layer.Layer<never> =>
  Layer.unwrap(
    Effect.promise(async () => {
      const [OtlpTracer, OtlpSerialization, FetchHttpClient] = await Promise.all([
        import("effect/observability/OtlpTracer"),
        import("effect/observability/OtlpSerialization"),
        import("effect/http/FetchHttpClient")
      ])
      return OtlpTracer.layer({
        url: `${otlpUrl}/v1/traces`,
        resource: { serviceName: "convoke" }
      }).pipe(
        Layer.provide(OtlpSerialization.layerJson),
        Layer.provide(FetchHttpClient.layer)
      ) as Layer.Layer<never>
    })
  )

/** The layers and metrics the settings ask for. */
export const fromSettings = (settings: Settings): Observability => {
  const metrics = settings.metrics === "off" ? undefined : ChatMetrics.make()
  const layers: Array<Layer.Layer<never, ChatError.StoreUnavailable>> = [
    ChatLog.layer(),
    loggerLayer(settings.logFormat)
  ]
  if (metrics !== undefined) {
    layers.push(
      ChatMetrics.layer({ metrics, path: settings.metrics === "on" ? ChatMetrics.DEFAULT_PATH : false })
    )
  }
  // Abandonment is computed by the database, over a connection of its own: the
  // embedded PGlite accepts one connection, which the store holds.
  const abandonment = metrics !== undefined && settings.databaseUrl !== undefined
  if (abandonment) {
    layers.push(
      ChatMetrics.layerAbandonment({ metrics }).pipe(
        Layer.provide(PgConversationStatistics.layerUrl(settings.databaseUrl!))
      )
    )
  }
  if (settings.otlpUrl !== undefined) layers.push(tracerLayer(settings.otlpUrl))
  // With no exporter, spans would be built (each capturing a stack trace) and
  // dropped: on the chat path that is a large share of a request's CPU.
  else layers.push(Layer.succeed(References.TracerEnabled, false))
  return {
    layer: Layer.mergeAll(Layer.empty, ...layers),
    metrics,
    summary: [
      ...(metrics === undefined
        ? []
        : ([
            [
              "abandonment",
              abandonment
                ? "conversation_abandonment_rate from PostgreSQL, every minute"
                : "needs DATABASE_URL"
            ]
          ] as const)),
      ["logs", settings.logFormat === "off" ? "warnings and errors only" : settings.logFormat],
      ["traces", settings.otlpUrl === undefined ? "off" : `OTLP ${settings.otlpUrl}/v1/traces`]
    ]
  }
}

/** The admin port: the metrics and the details of `/health`, on an address of their own. */
export interface MetricsServer {
  /** Where Prometheus scrapes. */
  readonly url: string
  /** Where the details of `/health` are. */
  readonly healthUrl: string
  readonly close: () => Promise<void>
}

/**
 * Serves `GET /metrics` and `GET /health` with its details, for anyone who
 * reaches `host:port`: bind it where only operators and Prometheus can.
 */
export const listenMetrics = async (
  metrics: ChatMetrics.ChatMetrics,
  address: { readonly host: string; readonly port: number },
  chat: ChatHttp.HttpApp
): Promise<MetricsServer> => {
  const app = await Effect.runPromise(
    ChatHttp.withServicesOf(
      chat,
      Effect.map(Health.detailsRoutes, (health) => [ChatMetrics.route(metrics), ...health])
    )
  )
  const http: HttpServer = createServer(NodeHandler.toNodeHandler(app))
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject)
    http.listen(address.port, address.host, () => {
      http.off("error", reject)
      resolve()
    })
  })
  const port = (http.address() as AddressInfo).port
  const host = address.host.includes(":") ? `[${address.host}]` : address.host
  return {
    url: `http://${host}:${port}${ChatMetrics.DEFAULT_PATH}`,
    healthUrl: `http://${host}:${port}${Health.HEALTH_PATH}`,
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve())
        http.closeAllConnections()
      })
  }
}
