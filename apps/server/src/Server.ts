/**
 * The reference server: Convoke's core on `node:http`, with the store, model
 * and identity chosen from settings. `start` is what the CLI runs and what
 * the tests start in-process.
 */
import { existsSync } from "node:fs"
import type { Server as HttpServer, IncomingMessage } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { join, resolve } from "node:path"
import type { Duplex } from "node:stream"
import * as AnthropicModels from "@convoke/anthropic/models"
import {
  AdminAccess,
  ChatConfig,
  type ChatError,
  ChatHttp,
  ChatRateLimit,
  ConversationCleanup,
  ConversationOutbox,
  EchoLanguageModel,
  HttpSecurity,
  Identity,
  type LanguageModel,
  OutboxRedis,
  RedisTurnLog,
  SocketTickets,
  TurnLog
} from "@convoke/core"
import { NodeHandler, NodeSocket, OutboxJournal } from "@convoke/core/node"
import { PgApiKeyStore, PgConversationStore, PgEmbedded } from "@convoke/store-pg"
import { PgClient } from "@effect/sql-pg"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as Observability from "./Observability.ts"
import { checkAnonymous, type Settings } from "./Settings.ts"
import * as StaticFiles from "./StaticFiles.ts"

// Not imported: an ES import of `node:http` loads undici (see `NodeHandler` in `@convoke/core`).
const { createServer } = process.getBuiltinModule("node:http")

/**
 * Connections the kernel may queue before the server accepts them (capped by
 * `net.core.somaxconn`). Node's default, 511, overflows when thousands of
 * clients connect at once (reconnecting after a deploy, say): the kernel
 * drops their SYNs, and they retry only after a second or three.
 */
const LISTEN_BACKLOG = 4096

/** A started server. */
export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:3000`. */
  readonly url: string
  readonly port: number
  readonly app: ChatHttp.App
  readonly http: HttpServer
  /** Where Prometheus scrapes (`…/metrics`), or `undefined` when metrics are off. */
  readonly metricsUrl: string | undefined
  /** What is active, for the banner. */
  readonly summary: ReadonlyArray<readonly [string, string]>
  /** Whether every request is the same anonymous user (no keys, stored or configured, and no JWT). */
  readonly anonymous: boolean
  /**
   * Graceful stop: refuse new connections, end open streams with an error
   * event and `[DONE]`, wait up to the grace period, close the database.
   */
  readonly close: () => Promise<void>
}

/** The connections of the database client's pool: the store's lanes are sized by it. */
const connectionsOf = (settings: Pick<Settings, "databaseUrl">): number =>
  settings.databaseUrl === undefined ? PgEmbedded.CONNECTIONS : PgConversationStore.DEFAULT_CONNECTIONS

/** The database client: PostgreSQL by URL, else embedded PGlite. */
export const databaseLayer = (
  settings: Pick<Settings, "databaseUrl" | "dataDir">
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, ChatError.StoreUnavailable | SqlError.SqlError> =>
  settings.databaseUrl === undefined
    ? PgEmbedded.layer({
        dataDir: settings.dataDir.startsWith("memory://") ? settings.dataDir : resolve(settings.dataDir)
      })
    : PgClient.layer({
        url: Redacted.make(settings.databaseUrl),
        applicationName: "convoke",
        maxConnections: connectionsOf(settings),
        ...PgConversationStore.MULTIPLEX
      })

// Claude when an Anthropic key is configured, the echo model otherwise. The
// public model name is accepted as a request alias too, since clients see it
// in every metadata event. The Anthropic SDK is imported only when it is
// used: loaded for nothing, its modules cost several megabytes of memory.
const modelLayer = async (settings: Settings) => {
  const anthropic = settings.anthropic
  if (anthropic === undefined)
    return EchoLanguageModel.layer({ delay: Duration.millis(settings.echoDelayMs) })
  const { AnthropicLanguageModel } = await import("@convoke/anthropic")
  const model = anthropic.model ?? AnthropicModels.defaultModel
  return AnthropicLanguageModel.layer({
    apiKey: anthropic.apiKey,
    baseUrl: anthropic.baseUrl,
    model,
    models: { [settings.chat.publicModel]: model, ...anthropic.models },
    maxTokens: anthropic.maxTokens,
    system: anthropic.systemPrompt,
    idleTimeout: Duration.millis(anthropic.idleTimeoutMs),
    retry: { maxRetries: anthropic.maxRetries, baseDelay: Duration.millis(anthropic.retryDelayMs) },
    history: { maxMessages: anthropic.historyMaxMessages, maxCharacters: anthropic.historyMaxCharacters }
  })
}

const modelSummary = (settings: Settings): string => {
  const anthropic = settings.anthropic
  if (anthropic === undefined) return `echo (${settings.echoDelayMs} ms per word; no model key configured)`
  const where = anthropic.baseUrl === undefined ? "" : ` via ${redactUrl(anthropic.baseUrl)}`
  return `anthropic ${anthropic.model ?? AnthropicModels.defaultModel}${where} (ANTHROPIC_API_KEY set)`
}

/**
 * The conversation store and the API key store, sharing one client; migrations
 * run once. On PostgreSQL, one more connection answers the store's liveness
 * check; PGlite runs in this process and cannot be out of reach.
 */
const storeLayer = (settings: Settings) =>
  PgApiKeyStore.layer.pipe(
    Layer.provideMerge(
      Layer.unwrap(
        Effect.map(
          settings.databaseUrl === undefined
            ? Effect.succeed(undefined)
            : PgConversationStore.liveness(settings.databaseUrl, { applicationName: "convoke" }),
          (alive) =>
            PgConversationStore.layerWithAuditLog({
              name: settings.databaseUrl === undefined ? "pglite" : "postgres",
              // The pool's size, so statements a response waits on go first.
              connections: connectionsOf(settings),
              alive
            }).pipe(Layer.provideMerge(databaseLayer(settings)))
        )
      )
    )
  )

/**
 * Stored keys, configured keys and JWTs, combined; anonymous only when none
 * of them can ever authenticate anyone (no configured auth, no active stored
 * key at start) — and then only on loopback unless explicitly allowed.
 */
const identityLayer = (settings: Settings, state: { anonymous: boolean; refusal?: unknown }) =>
  Layer.effect(
    Identity.Identity,
    Effect.gen(function* () {
      const keyStore = yield* PgApiKeyStore.PgApiKeyStore
      const providers: Array<Identity.Service> = [yield* PgApiKeyStore.identity]
      if (settings.apiKeys.length > 0) providers.push(yield* Identity.makeApiKeys(settings.apiKeys))
      if (settings.jwt !== undefined) {
        // Imported only when JWTs are configured, like the other optional parts.
        const { JwtIdentity } = yield* Effect.promise(() => import("@convoke/auth"))
        const { secret, jwksUrl, issuer, audience, userClaim, userIds, jwksCooldownSeconds } = settings.jwt
        providers.push(
          yield* JwtIdentity.make({
            secret,
            jwksUrl,
            issuer,
            audience,
            userClaim,
            userIds,
            jwksCooldownMillis: jwksCooldownSeconds * 1000
          })
        )
      }
      if (providers.length === 1 && (yield* keyStore.countActive) === 0) {
        try {
          checkAnonymous(settings)
        } catch (refusal) {
          state.refusal = refusal
        }
        state.anonymous = true
        // Loopback Host names only, so a DNS-rebound page cannot reach it, unless anonymous
        // access off loopback was asked for; foreign browser origins are refused either way.
        return Identity.makeAnonymous({
          hosts: settings.insecureAnonymous ? "any" : "loopback",
          allowedOrigins: settings.security.cors?.allowedOrigins
        })
      }
      return Identity.any(providers)
    })
  )

/**
 * One Redis connection for everything the server keeps there; built once,
 * however often it is provided. The Redis client is imported only when a URL
 * is set.
 */
const redisLayer = async (settings: Settings) => {
  if (settings.redisUrl === undefined) return undefined
  const NodeRedis = await import("@effect/platform-node/NodeRedis")
  return NodeRedis.layer({ url: settings.redisUrl }).pipe(Layer.orDie)
}

type RedisLayer = Awaited<ReturnType<typeof redisLayer>>

const rateLimitLayer = (settings: Settings, redis: RedisLayer) => {
  const { user, address, failures, concurrent } = settings.rateLimit
  // Every limit set to 0 is an explicit choice: without a layer the core's defaults would apply.
  if (user.limit === 0 && address.limit === 0 && failures.limit === 0 && concurrent === 0)
    return ChatRateLimit.layerUnlimited
  return redis === undefined
    ? ChatRateLimit.layerMemory(settings.rateLimit)
    : ChatRateLimit.layerRedis(settings.rateLimit).pipe(Layer.provide(redis))
}

/** Where the outbox journal lives without Redis: beside the embedded database, in the data directory. */
export const outboxDirectory = (settings: Pick<Settings, "dataDir">): string =>
  join(resolve(settings.dataDir), "outbox")

/**
 * Where writes queued while the database is down are kept: in Redis when it
 * is configured (any instance drains them), else in a journal in the data
 * directory (replayed at the next start), in memory only when the data
 * directory itself is (`memory://`).
 */
const outboxLayer = (settings: Settings, redis: RedisLayer) => {
  if (redis !== undefined)
    return OutboxRedis.layer({ prefix: settings.outboxPrefix }).pipe(Layer.provide(redis))
  if (settings.dataDir.startsWith("memory://")) return Layer.empty
  return OutboxJournal.layer({ directory: outboxDirectory(settings) })
}

/** The banner's outbox line: where writes wait, and what was found at start. */
const outboxSummary = (settings: Settings, stats: ConversationOutbox.Stats): string => {
  const where =
    settings.redisUrl !== undefined
      ? `Redis ${redactUrl(settings.redisUrl)}, prefix ${settings.outboxPrefix} (survives a crash; any instance with the prefix writes it)`
      : settings.dataDir.startsWith("memory://")
        ? "in memory (lost on a crash: the data directory is in memory)"
        : `journal in ${outboxDirectory(settings)} (survives a crash; replayed at start)`
  const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`
  const found = [
    ...(stats.recovered > 0 ? [`${count(stats.recovered, "queued write")} recovered`] : []),
    ...(stats.skipped > 0 ? [`${count(stats.skipped, "damaged record")} skipped`] : [])
  ]
  const userCapacity =
    settings.outboxUserCapacity ?? ConversationOutbox.defaultUserCapacity(settings.outboxCapacity)
  const share = userCapacity === 0 ? "" : ` (${userCapacity} per user)`
  return `${settings.outboxCapacity} writes at most${share}, ${where}${found.length > 0 ? `; ${found.join(", ")}` : ""}`
}

/** The turn log: in memory, or in Redis so every instance can resume and stop every turn. */
const turnLogLayer = (settings: Settings, redis: RedisLayer) => {
  const maxBytes = settings.turnLogMaxMb * 1024 * 1024
  return redis === undefined
    ? TurnLog.layerMemory({ maxBytes })
    : RedisTurnLog.layer({ prefix: settings.turnLogPrefix, maxBytes }).pipe(Layer.provide(redis))
}

/**
 * The listener's limits on slow and idle clients. A request head must arrive
 * within `headersTimeout` (else a 408); the body's own limit is the core's
 * (`ChatConfig.bodyTimeout`, a 408 too), and Node's `requestTimeout` is only
 * the backstop for a request whose body nobody reads. Neither applies once a
 * request is in: a stream may last as long as its reply.
 */
export const listenerOptions = (
  settings: Pick<Settings, "headersTimeoutMs" | "keepAliveTimeoutMs" | "chat">
): {
  readonly headersTimeout: number
  readonly requestTimeout: number
  readonly keepAliveTimeout: number
  readonly connectionsCheckingInterval: number
} => {
  const headersTimeout = settings.headersTimeoutMs
  const bodyTimeout = Duration.toMillis(settings.chat.bodyTimeout)
  return {
    headersTimeout,
    requestTimeout: headersTimeout + bodyTimeout + 1000,
    keepAliveTimeout: settings.keepAliveTimeoutMs,
    // Node looks for expired requests this often: a fraction of the shortest limit.
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(headersTimeout / 4)))
  }
}

/**
 * Caps the open connections of a server at `max`: one more is answered with a
 * 503 and the common error body, and closed. (Node's own `maxConnections`
 * drops it without a word.) Returns the refused sockets, whose requests the
 * handler must ignore.
 */
const capConnections = (http: HttpServer, max: number): WeakSet<Socket> => {
  const refused = new WeakSet<Socket>()
  let open = 0
  http.prependListener("connection", (socket: Socket) => {
    open++
    socket.once("close", () => {
      open--
    })
    if (open <= max) return
    refused.add(socket)
    socket.end(NodeHandler.rawError(503, "Too many connections; try again later"))
    socket.once("finish", () => socket.destroy())
  })
  return refused
}

/** Options of `start` beyond the settings. */
export interface StartOptions {
  /**
   * Services that replace the ones chosen from settings (tests swap in a
   * recording model), or extensions added after the server's own (tests
   * await chat-turn events with `TestObserver` from `@convoke/core/testing`).
   */
  readonly layer?:
    | Layer.Layer<LanguageModel.LanguageModel | Identity.Identity>
    | Layer.Layer<never>
    | undefined
}

/** Starts the server; resolves once it listens and the database is migrated. */
export const start = async (settings: Settings, options: StartOptions = {}): Promise<RunningServer> => {
  const state: { anonymous: boolean; refusal?: unknown } = { anonymous: false }
  // One store layer value: referenced twice below, it is built once.
  const store = storeLayer(settings)
  const cleanup =
    settings.cleanupIntervalMinutes === 0
      ? Layer.empty
      : ConversationCleanup.layer({
          interval: Duration.minutes(settings.cleanupIntervalMinutes),
          abandonedAfter: Duration.hours(settings.abandonedAfterHours)
        }).pipe(Layer.provide(store))
  const observability = Observability.fromSettings(settings)
  const redis = await redisLayer(settings)
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      observability.layer,
      identityLayer(settings, state).pipe(Layer.provideMerge(store)),
      cleanup,
      await modelLayer(settings),
      Layer.succeed(ChatConfig.ChatConfig, settings.chat),
      rateLimitLayer(settings, redis),
      outboxLayer(settings, redis),
      Layer.succeed(HttpSecurity.HttpSecurity, settings.security),
      AdminAccess.layer({ token: settings.adminToken }),
      options.layer ?? Layer.empty
    ),
    {
      outbox: { capacity: settings.outboxCapacity, userCapacity: settings.outboxUserCapacity },
      turnLog: turnLogLayer(settings, redis),
      socketTickets: redis === undefined ? undefined : SocketTickets.layerRedis().pipe(Layer.provide(redis))
    }
  )
  if (state.refusal !== undefined) {
    await app.dispose()
    throw state.refusal
  }
  const chatHandler = NodeHandler.toNodeHandler(app)
  // The web demo (or any static directory) at `/`; API paths always reach the core.
  const staticFiles =
    settings.webDir === undefined ? undefined : StaticFiles.make(settings.webDir, app.http.claims)
  const http = createServer(
    {
      maxHeaderSize: settings.maxHeaderBytes,
      ...listenerOptions(settings)
    },
    (request, response) => {
      // Past the connection cap: already answered with a 503 and closing.
      if (refused.has(request.socket)) return
      if (staticFiles === undefined || (request.method !== "GET" && request.method !== "HEAD")) {
        return chatHandler(request, response)
      }
      return staticFiles(request, response).then((served) =>
        served ? undefined : chatHandler(request, response)
      )
    }
  )
  // Malformed requests, oversized headers and heads that arrive too slowly get
  // the common error body, not a bare status line.
  http.on("clientError", NodeHandler.onClientError)
  const refused = capConnections(http, settings.maxConnections)
  // WebSockets (`GET /api/v0.3/ws`): upgraded sockets leave the HTTP server, so they are tracked here.
  const upgradeHandler = NodeSocket.toUpgradeHandler(app)
  const sockets = new Set<Duplex>()
  http.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (refused.has(socket as Socket)) {
      // Past the cap: answered with a 503 already; a reset must not throw out of the server.
      socket.on("error", () => {})
      return
    }
    sockets.add(socket)
    void upgradeHandler(request, socket, head).finally(() => sockets.delete(socket))
  })
  // Past it the last answer says `Connection: close`; Node answers more requests on it with 503.
  http.maxRequestsPerSocket = settings.maxRequestsPerSocket
  try {
    await new Promise<void>((resolveListen, reject) => {
      http.once("error", reject)
      http.listen({ port: settings.port, host: settings.host, backlog: LISTEN_BACKLOG }, () => {
        http.off("error", reject)
        resolveListen()
      })
    })
  } catch (error) {
    await app.dispose()
    throw error
  }
  const port = (http.address() as AddressInfo).port
  const host = settings.host.includes(":") ? `[${settings.host}]` : settings.host
  const url = `http://${host}:${port}`
  let metricsServer: Observability.MetricsServer | undefined
  if (observability.metrics !== undefined && typeof settings.metrics === "object") {
    try {
      metricsServer = await Observability.listenMetrics(observability.metrics, settings.metrics, app.http)
    } catch (error) {
      await new Promise<void>((done) => http.close(() => done()))
      await app.dispose()
      throw error
    }
  }
  const metricsUrl = settings.metrics === "on" ? `${url}/metrics` : metricsServer?.url

  let closing: Promise<void> | undefined
  const close = () =>
    (closing ??= (async () => {
      const closed = new Promise<void>((done) => http.close(() => done()))
      http.closeIdleConnections()
      await app.shutdown()
      const grace = new Promise<void>((done) => setTimeout(done, settings.shutdownGraceMs).unref())
      await Promise.race([closed, grace])
      http.closeAllConnections()
      // Sockets got their close frame (1001) at shutdown; any still open after the grace are cut.
      for (const socket of sockets) socket.destroy()
      await closed
      await metricsServer?.close()
      await app.dispose()
    })())

  const summary: Array<readonly [string, string]> = [
    ["listening", url],
    ["chat", `POST ${url}${ChatHttp.CHAT_PATH}`],
    [
      "store",
      settings.databaseUrl === undefined
        ? `embedded PGlite in ${resolve(settings.dataDir)}`
        : `PostgreSQL ${redactUrl(settings.databaseUrl)}`
    ],
    ["model", modelSummary(settings)],
    [
      "auth",
      state.anonymous
        ? "ANONYMOUS: every request is the same user. Create a key (convoke keys create) or set CONVOKE_API_KEYS / CONVOKE_JWT_SECRET / CONVOKE_JWKS_URL before exposing this server."
        : [
            "stored API keys",
            ...(settings.apiKeys.length > 0 ? [`${settings.apiKeys.length} configured API keys`] : []),
            ...(settings.jwt?.secret !== undefined ? ["HS256 JWTs"] : []),
            ...(settings.jwt?.jwksUrl !== undefined ? [`JWTs from ${settings.jwt.jwksUrl}`] : [])
          ].join(", ")
    ],
    [
      "rate limits",
      `${settings.rateLimit.user.limit || "unlimited"} requests per user, ${settings.rateLimit.address.limit || "unlimited"} per anonymous address, ${settings.rateLimit.failures.limit || "unlimited"} failed authentications per address or key prefix, per ${Duration.toSeconds(Duration.fromInputUnsafe(settings.rateLimit.user.window))} s; ${settings.rateLimit.concurrent || "unlimited"} in flight per user; ${settings.redisUrl === undefined ? "in memory" : `Redis ${redactUrl(settings.redisUrl)}`}`
    ],
    [
      "cors",
      settings.security.cors === undefined ? "off" : [settings.security.cors.allowedOrigins].flat().join(", ")
    ],
    [
      "turns",
      `resumable for ${Duration.toMinutes(TurnLog.defaults.retention)} min, ${Duration.toMillis(settings.chat.disconnectGrace)} ms grace after a disconnect; ${redis === undefined ? `in memory (this instance only, ${settings.turnLogMaxMb} MiB at most)` : `Redis ${redactUrl(settings.redisUrl!)} (shared by every instance)`}`
    ],
    [
      "outbox",
      outboxSummary(
        settings,
        Context.getUnsafe(app.http.context, ConversationOutbox.ConversationOutbox).stats()
      )
    ],
    ["public model", settings.chat.publicModel],
    [
      "metrics",
      metricsUrl === undefined
        ? "off"
        : `${metricsUrl}${settings.metrics === "on" ? (settings.adminToken === undefined ? " (open to anyone who reaches the chat port: set CONVOKE_ADMIN_TOKEN, or CONVOKE_METRICS=[host:]port)" : " (admin token)") : ""}`
    ],
    [
      "health details",
      metricsServer !== undefined
        ? `${metricsServer.healthUrl}${settings.adminToken === undefined ? "" : `, and ${url}/health with the admin token`}`
        : settings.adminToken === undefined
          ? `off (${url}/health answers only its status; set CONVOKE_ADMIN_TOKEN or CONVOKE_METRICS=[host:]port)`
          : `${url}/health with the admin token`
    ],
    ...observability.summary
  ]
  if (settings.webDir !== undefined) {
    summary.push([
      "web demo",
      existsSync(join(settings.webDir, "index.html"))
        ? `${url}/`
        : `not built (no index.html in ${settings.webDir}); run: pnpm --filter @convoke/web build`
    ])
  }
  return { url, port, app, http, metricsUrl, summary, anonymous: state.anonymous, close }
}

/** A database URL without its password, for logs. */
export const redactUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "(unparseable URL)"
  }
}
