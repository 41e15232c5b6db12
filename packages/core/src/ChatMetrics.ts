/**
 * Prometheus metrics of the chat endpoint, served as `GET /metrics` in the
 * Prometheus text format — on the application's own port, on a separate one,
 * or not at all.
 *
 * The metrics are Effect `Metric`s rendered by `PrometheusMetrics` from
 * `effect/observability`, not `prom-client`: that keeps `@convoke/core` on its
 * single dependency (`effect`) instead of a package of its own, updates are
 * plain synchronous calls inside the turn's fiber, and an application's own
 * Effect metrics can share the registry. Effect keeps metrics in a `MetricRegistry`, which is process-wide
 * unless one is provided: every `make` therefore starts its own registry, so
 * two applications (or two tests) in one process never see each other's
 * counts. Pass `registry` to share one on purpose.
 *
 * What is measured and where:
 * - from the chat turn (`ChatHooks`): conversations created by source,
 *   creation time and failures, resumptions, metadata events and the time
 *   from the request's arrival to the metadata event, the model's time to
 *   first token, the streams open right now and how they end;
 * - from the HTTP layer (`ChatExtension` middleware): chat requests by client
 *   kind (`ClientKind`) and status;
 * - from the router's guard (`ChatHooks.requestRefused`): failed
 *   authentications, and requests refused by a rate limit, by the limit.
 *
 * Leaving the layer out leaves out everything: no route, no hooks, no
 * middleware, no registry.
 *
 * The module is longer than most on purpose: each series is declared,
 * registered at zero and updated here, so a metric's name, its labels and
 * what moves it read in one place, as the alert rules and dashboards need.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import * as Schedule from "effect/Schedule"
import * as AdminAccess from "./AdminAccess.ts"
import * as ApiRouter from "./ApiRouter.ts"
import * as ChatExtension from "./ChatExtension.ts"
import type * as ChatHooks from "./ChatHooks.ts"
import { CHAT_PATH } from "./ChatRoute.ts"
import * as ClientKind from "./ClientKind.ts"
import * as ConversationStatistics from "./ConversationStatistics.ts"

/** The content type of the Prometheus text format. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/** The default path of the metrics route. */
export const DEFAULT_PATH = "/metrics"

/**
 * Where a created conversation came from: the resolver's sources (`absent`,
 * `new`, `invalid_id`, `unknown_id`), plus `temporary` (a stream started with a
 * fallback id because the store failed or was slow) and `reconciled` (such an
 * id stored once the store answered). Every one is exported from the start,
 * at zero, so rules and dashboards see a series before its first event.
 */
export const SOURCES = ["absent", "new", "invalid_id", "unknown_id", "temporary", "reconciled"] as const

/** How a stream can end; see `ChatHooks.Outcome`. */
export const OUTCOMES: ReadonlyArray<ChatHooks.Outcome> = [
  "complete",
  "client_closed",
  "cancelled",
  "model_error",
  "store_error",
  "shutdown",
  "interrupted"
]

/** How a resume request ended: a stream served, nothing to replay (204), or no such conversation (404). */
export const RESUME_OUTCOMES: ReadonlyArray<ChatHooks.TurnResumed["outcome"]> = [
  "replayed",
  "no_turn",
  "not_found"
]

/** The close codes of the WebSocket protocol (`docs/websocket.md`), and 1006 for a socket that dropped. */
export const CLOSE_CODES = [1000, 1001, 1003, 1006, 1007, 1008, 1009, 1011] as const

/** What can carry a stream; see `ChatHooks.Transport`. */
export const TRANSPORTS: ReadonlyArray<ChatHooks.Transport> = ["sse", "websocket"]

/** The limits that can refuse a request with a `429`; see `ChatRateLimit`. */
export const LIMITS = ["user", "address", "failures", "concurrent"] as const

/** Why creating or finding a conversation failed. */
export const FAILURE_REASONS: ReadonlyArray<ChatHooks.ConversationFailed["reason"]> = ["store_unavailable"]

/**
 * Bucket bounds in seconds, 1 ms to 1 s in 1-2-5 steps. 0.5 s is a bound, so
 * "p95 above 500 ms" is decided exactly by the buckets, not by interpolation.
 */
export const FAST_BUCKETS: ReadonlyArray<number> = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]

/** Bucket bounds in seconds for slower things (the model's first token): 1 ms to 30 s. */
export const SLOW_BUCKETS: ReadonlyArray<number> = [...FAST_BUCKETS, 2, 5, 10, 30]

/** A running set of Convoke metrics. */
export interface ChatMetrics {
  /** The registry the metrics live in. */
  readonly registry: Metric.MetricRegistry
  /** The chat-turn observer; combine it with others through `ChatHooks.combine`. */
  readonly observer: ChatHooks.Service
  /** Counts chat requests by client kind and status. */
  readonly middleware: (app: ChatExtension.App) => ChatExtension.App
  /** The metrics in the Prometheus text format. */
  readonly format: () => string
  /**
   * Sets the abandonment gauges from the store's answer (`layerAbandonment`
   * does it periodically); they are absent until first set.
   */
  readonly recordAbandonment: (abandonment: ConversationStatistics.Abandonment) => void
}

/** Options of `make`. */
export interface Options {
  /** The registry to record into; a fresh one by default. */
  readonly registry?: Metric.MetricRegistry | undefined
}

const seconds = (millis: number) => Math.max(0, millis) / 1000

/** Creates the metrics, every known series registered at zero. */
export const make = (options: Options = {}): ChatMetrics => {
  const registry: Metric.MetricRegistry = options.registry ?? new Map()
  const context = Context.make(Metric.MetricRegistry, registry) as Context.Context<never>

  /** One metric per value of a label, made on first use and then reused. */
  const labelled = <M extends Metric.Metric<number, any>>(base: M, label: string) => {
    const byValue = new Map<string, Metric.Metric<number, any>>()
    return (value: string) => {
      let metric = byValue.get(value)
      if (metric === undefined) {
        metric = Metric.withAttributes(base, { [label]: value })
        byValue.set(value, metric)
      }
      return metric
    }
  }
  const register = (metric: Metric.Metric<number, any>) => {
    metric.valueUnsafe(context)
  }
  const add = (metric: Metric.Metric<number, any>, value = 1) => metric.updateUnsafe(value, context)

  const creationDuration = Metric.histogram("conversation_creation_duration_seconds", {
    description: "Time to create a conversation, store round trip included",
    boundaries: Metric.boundariesFromIterable(FAST_BUCKETS)
  })
  const creationFailures = labelled(
    Metric.counter("conversation_creation_failures_total", {
      description: "Requests whose conversation could not be created or looked up, by reason",
      incremental: true
    }),
    "reason"
  )
  const created = labelled(
    Metric.counter("conversations_created_total", {
      description: "Conversations created, by source of the decision to create",
      incremental: true
    }),
    "source"
  )
  const resumed = Metric.counter("conversations_resumed_total", {
    description: "Requests that continued an existing conversation",
    incremental: true
  })
  const metadataEmitted = labelled(
    Metric.counter("metadata_event_emission_total", {
      description: "Metadata events sent as the first event of a stream, by whether the id is temporary",
      incremental: true
    }),
    "temporary"
  )
  const streamStartLatency = Metric.histogram("stream_start_latency_seconds", {
    description: "Time from the request's arrival to the metadata event",
    boundaries: Metric.boundariesFromIterable(SLOW_BUCKETS)
  })
  const streamsStarted = labelled(
    Metric.counter("streams_started_total", {
      description: "Event streams started (metadata event sent), by transport: sse or websocket",
      incremental: true
    }),
    "transport"
  )
  const socketsOpen = Metric.gauge("websocket_connections_active", {
    description: "WebSocket connections open right now"
  })
  const socketsClosed = labelled(
    Metric.counter("websocket_closes_total", {
      description: "WebSocket connections closed, by close code (1006: dropped without one)",
      incremental: true
    }),
    "code"
  )
  const streamsActive = Metric.gauge("streams_active", {
    description: "Event streams being sent right now"
  })
  const outcomes = labelled(
    Metric.counter("stream_outcomes_total", {
      description: "Streams ended, by outcome",
      incremental: true
    }),
    "outcome"
  )
  const firstToken = Metric.histogram("model_time_to_first_token_seconds", {
    description: "Time from the model call to its first text",
    boundaries: Metric.boundariesFromIterable(SLOW_BUCKETS)
  })
  const requestsByClient = labelled(
    Metric.counter("chat_requests_total", {
      description: "Requests to the chat endpoint, by client kind and response status",
      incremental: true
    }),
    "client"
  )
  const resumes = labelled(
    Metric.counter("turn_resumes_total", {
      description: "Requests to resume a turn's stream, by outcome",
      incremental: true
    }),
    "outcome"
  )
  const stops = labelled(
    Metric.counter("turn_stop_requests_total", {
      description: "Requests to stop a turn, by whether one was running",
      incremental: true
    }),
    "running"
  )
  const logTurns = Metric.gauge("turn_log_turns", {
    description: "Turns this instance's turn log keeps (running, and ended within the retention window)"
  })
  const logEvents = Metric.gauge("turn_log_events", {
    description: "Events this instance's turn log keeps"
  })
  const logDropped = Metric.gauge("turn_log_dropped_events", {
    description:
      "Events the turn log dropped since start to stay within its bounds (a resume past them gets 204)"
  })
  const logBytes = Metric.gauge("turn_log_bytes", {
    description: "Estimated memory of the turns this instance's turn log keeps (bounded by its maxBytes)"
  })
  const authenticationFailures = Metric.counter("authentication_failures_total", {
    description: "Requests whose credentials were missing or invalid (401), on every route",
    incremental: true
  })
  const rateLimited = labelled(
    Metric.counter("rate_limited_requests_total", {
      description:
        "Requests refused with 429, by the limit spent (user, address, failures: failed authentications, concurrent)",
      incremental: true
    }),
    "limit"
  )
  const requests = (client: ClientKind.ClientKind, status: number) =>
    Metric.withAttributes(requestsByClient(client), { status: String(status) })

  // Registered in the order they are listed in the exposition.
  register(creationDuration)
  for (const reason of FAILURE_REASONS) register(creationFailures(reason))
  for (const source of SOURCES) register(created(source))
  register(resumed)
  for (const temporary of ["false", "true"]) register(metadataEmitted(temporary))
  register(streamStartLatency)
  register(streamsActive)
  for (const transport of TRANSPORTS) register(streamsStarted(transport))
  register(socketsOpen)
  for (const code of CLOSE_CODES) register(socketsClosed(String(code)))
  for (const outcome of OUTCOMES) register(outcomes(outcome))
  register(firstToken)
  for (const outcome of RESUME_OUTCOMES) register(resumes(outcome))
  for (const running of ["true", "false"]) register(stops(running))
  register(logTurns)
  register(logEvents)
  register(logDropped)
  register(logBytes)
  register(authenticationFailures)
  for (const limit of LIMITS) register(rateLimited(limit))
  // Requests are counted only once their status is known; the 200s are
  // registered up front so adoption-rate rules have every client's series.
  for (const client of ClientKind.kinds) register(requests(client, 200))

  const requestCache = new Map<string, Metric.Metric<number, any>>()
  const countRequest = (client: ClientKind.ClientKind, status: number) => {
    const key = `${client} ${status}`
    let metric = requestCache.get(key)
    if (metric === undefined) {
      metric = requests(client, status)
      requestCache.set(key, metric)
    }
    add(metric)
  }

  const observer: ChatHooks.Service = {
    conversationResolved: (event) =>
      Effect.sync(() => {
        if (event.created) {
          add(created(event.source))
          // A reconciliation is not a creation attempt; its delay is the outage's length.
          if (event.source !== "reconciled")
            creationDuration.updateUnsafe(seconds(event.durationMillis), context)
        } else {
          add(resumed)
        }
      }),
    conversationFailed: (event) => Effect.sync(() => add(creationFailures(event.reason))),
    // A stream is open from its metadata event to its turn's end: every
    // stream that sends the one reports the other.
    metadataSent: (event) =>
      Effect.sync(() => {
        add(metadataEmitted(String(event.temporary)))
        streamStartLatency.updateUnsafe(seconds(event.latencyMillis), context)
        streamsActive.modifyUnsafe(1, context)
        add(streamsStarted(event.transport ?? "sse"))
      }),
    firstToken: (event) => Effect.sync(() => firstToken.updateUnsafe(seconds(event.latencyMillis), context)),
    turnEnded: (event) =>
      event.stream
        ? Effect.sync(() => {
            add(outcomes(event.outcome))
            // An interrupted turn is reported by the instance that noticed, which never counted it open.
            if (event.outcome !== "interrupted") streamsActive.modifyUnsafe(-1, context)
          })
        : Effect.void,
    turnResumed: (event) => Effect.sync(() => add(resumes(event.outcome))),
    stopRequested: (event) => Effect.sync(() => add(stops(String(event.running)))),
    turnLogSize: (event) =>
      Effect.sync(() => {
        logTurns.updateUnsafe(event.turns, context)
        logEvents.updateUnsafe(event.events, context)
        logDropped.updateUnsafe(event.dropped, context)
        logBytes.updateUnsafe(event.bytes, context)
      }),
    // A turn asked for on a socket is a chat request like a POST: counted by client and status.
    socketChatAnswered: (event) => Effect.sync(() => countRequest(event.client, event.status)),
    socketChanged: (event) =>
      Effect.sync(() => {
        if (event.code === undefined) socketsOpen.modifyUnsafe(1, context)
        else {
          socketsOpen.modifyUnsafe(-1, context)
          add(socketsClosed(String(event.code)))
        }
      }),
    requestRefused: (event) =>
      Effect.sync(() => {
        if (event.reason === "unauthenticated") add(authenticationFailures)
        else add(rateLimited(event.scope ?? "user"))
      })
  }

  const middleware = (app: ChatExtension.App): ChatExtension.App =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (ApiRouter.pathOf(request.url) !== CHAT_PATH) return yield* app
      const client = ClientKind.detect(request.headers)
      const response = yield* app.pipe(
        // The client left before the response started: nginx's 499.
        Effect.onInterrupt(() => Effect.sync(() => countRequest(client, 499)))
      )
      countRequest(client, response.status)
      return response
    })

  const abandonmentRate = Metric.gauge("conversation_abandonment_rate", {
    description: "Share of the conversations created in the measured window that were never continued"
  })
  const abandonmentSample = Metric.gauge("conversation_abandonment_window_conversations", {
    description: "Conversations created in the window conversation_abandonment_rate is measured over"
  })
  const recordAbandonment = ({ created, abandoned }: ConversationStatistics.Abandonment) => {
    abandonmentRate.updateUnsafe(created === 0 ? Number.NaN : abandoned / created, context)
    abandonmentSample.updateUnsafe(created, context)
  }

  return {
    registry,
    observer,
    middleware,
    format: () => PrometheusMetrics.formatUnsafe(context),
    recordAbandonment
  }
}

/** Options of `layer`. */
export interface LayerOptions {
  /** The metrics to record into; `make()` by default. */
  readonly metrics?: ChatMetrics | undefined
  /**
   * The path of the metrics route on the application (default `/metrics`);
   * `false` records without serving them there — serve `route(metrics)`
   * elsewhere, e.g. on a port that is not exposed.
   */
  readonly path?: `/${string}` | false | undefined
}

/** The route that serves the metrics in the Prometheus text format (`GET`, and `HEAD`). */
export const route = (metrics: ChatMetrics, path: `/${string}` = DEFAULT_PATH): ApiRouter.Route =>
  ApiRouter.route(
    "GET",
    path,
    Effect.sync(() => HttpServerResponse.text(metrics.format(), { contentType: CONTENT_TYPE })),
    // Public: scrapers send no credentials; serve it on a port that is not exposed to keep it private.
    "public"
  )

/**
 * Records the metrics of an application and serves them; an extension, so it
 * composes with other extensions and hooks by merging:
 *
 * ```ts
 * ChatHttp.makeApp(Layer.mergeAll(store, model, identity, ChatMetrics.layer()))
 * ```
 *
 * To serve them elsewhere (a port that is not exposed), pass `path: false`
 * and serve `ChatHttp.fromRoutes([ChatMetrics.route(metrics)])` there. On the
 * application, the route answers only requests with the admin token when one
 * is set (`AdminAccess`).
 */
export const layer = (options: LayerOptions = {}): Layer.Layer<never> => {
  const metrics = options.metrics ?? make()
  const path = options.path ?? DEFAULT_PATH
  return ChatExtension.layer({
    hooks: metrics.observer,
    middleware: metrics.middleware,
    ...(path === false ? {} : { routes: [AdminAccess.protect(route(metrics, path))] })
  })
}

/** Options of `layerAbandonment`. */
export interface AbandonmentOptions {
  /** The metrics to set the gauges on. */
  readonly metrics: ChatMetrics
  /** How far back conversations are counted (default 24 hours). */
  readonly lookback?: Duration.Input | undefined
  /**
   * How old a conversation must be before it can count as abandoned (default
   * 1 hour): a conversation created a minute ago has not had its chance yet.
   */
  readonly grace?: Duration.Input | undefined
  /** How often the store is asked (default every minute). */
  readonly interval?: Duration.Input | undefined
}

/**
 * Keeps `conversation_abandonment_rate` up to date from the store: the share
 * of conversations created between `lookback + grace` and `grace` ago that
 * have at most one user message. Computed by the store, so it is right across
 * instances and restarts (every instance reports the same value: aggregate
 * with `max`, not `sum`). Asks once when built, then every `interval`; a
 * failed refresh is logged and the gauges keep their last value.
 */
export const layerAbandonment = (
  options: AbandonmentOptions
): Layer.Layer<never, never, ConversationStatistics.ConversationStatistics> =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const statistics = yield* ConversationStatistics.ConversationStatistics
      const lookback = Duration.toMillis(Duration.fromInputUnsafe(options.lookback ?? Duration.hours(24)))
      const grace = Duration.toMillis(Duration.fromInputUnsafe(options.grace ?? Duration.hours(1)))
      const refresh = Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const abandonment = yield* statistics.abandonment({
          from: new Date(now - grace - lookback),
          to: new Date(now - grace)
        })
        options.metrics.recordAbandonment(abandonment)
      }).pipe(
        Effect.catchCause((cause) => Effect.logWarning("Could not refresh conversation abandonment", cause))
      )
      yield* refresh
      yield* refresh.pipe(
        Effect.repeat(Schedule.spaced(Duration.fromInputUnsafe(options.interval ?? Duration.minutes(1)))),
        Effect.forkScoped
      )
    })
  )
