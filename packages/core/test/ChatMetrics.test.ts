import * as Prometheus from "@convoke/prometheus-text"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Layer, Metric } from "effect"
import {
  ChatConfig,
  ChatError,
  ChatExtension,
  ChatHooks,
  ChatHttp,
  ChatMetrics,
  ConversationStatistics,
  ConversationStore,
  Identity
} from "../src/index.ts"
import * as Sse from "../src/testing/Sse.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestObserver from "../src/testing/TestObserver.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const CHAT_URL = "http://localhost/api/v0.3/chat"
const METRIC_NAMES = [
  "conversation_creation_duration_seconds",
  "conversation_creation_failures_total",
  "conversations_created_total",
  "conversations_resumed_total",
  "metadata_event_emission_total",
  "stream_start_latency_seconds",
  "streams_active",
  "streams_started_total",
  "websocket_connections_active",
  "websocket_closes_total",
  "stream_outcomes_total",
  "model_time_to_first_token_seconds",
  "turn_resumes_total",
  "turn_stop_requests_total",
  "turn_log_turns",
  "turn_log_events",
  "turn_log_dropped_events",
  "turn_log_bytes",
  "authentication_failures_total",
  "rate_limited_requests_total",
  "chat_requests_total"
]

/**
 * The model of the scripted sequence: "hang" sends one delta and then nothing
 * (the client will leave), "fail" sends one delta and then fails, anything
 * else is a two-delta reply.
 */
const scriptedModel = () =>
  TestModel.make((request) => {
    const message = request.messages.at(-1)?.content
    if (message === "hang") return TestModel.endless("Thinking")
    if (message === "fail") return TestModel.failAfter(["Partial"], TestModel.overloaded)
    return TestModel.reply("Hello", " there")
  })

/** A store whose `create` and `find` fail while `failing.on` is set. */
const switchableStore = () => {
  const inner = TestStore.make()
  const failing = { on: false }
  const down = Effect.suspend(() =>
    failing.on ? Effect.fail(new ChatError.StoreUnavailable({ message: "down" })) : Effect.void
  )
  const service: ConversationStore.Service = {
    ...inner.service,
    create: (input) => Effect.andThen(down, inner.service.create(input)),
    find: (input) => Effect.andThen(down, inner.service.find(input))
  }
  return { failing, layer: Layer.succeed(ConversationStore.ConversationStore, service) }
}

/** Streams whose client leaves end at once here, so their outcome is counted when the client goes. */
const noGrace = Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make({ disconnectGrace: Duration.zero }))

const withApp = async <A>(layer: Layer.Layer<any, never, never>, body: (app: ChatHttp.App) => Promise<A>) => {
  const app = await ChatHttp.makeApp(Layer.merge(layer, noGrace))
  try {
    return await body(app)
  } finally {
    await app.dispose()
  }
}

const post = (app: ChatHttp.App, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  app.handler(
    new Request(CHAT_URL, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
      ...(signal === undefined ? {} : { signal })
    })
  )

const scrape = async (app: ChatHttp.App) => {
  const response = await app.handler(new Request("http://localhost/metrics"))
  assert.strictEqual(response.status, 200)
  assert.strictEqual(response.headers.get("content-type"), ChatMetrics.CONTENT_TYPE)
  return Prometheus.parse(await response.text())
}

/**
 * Scrapes once `streams` streams have ended: their ends are recorded by
 * finalizers, after the client has its last byte. The observer is merged
 * after `ChatMetrics.layer()`, so what it has seen has been counted.
 */
const scrapeSettled = async (app: ChatHttp.App, observer: TestObserver.TestObserver, streams: number) => {
  await observer.until((seen) => TestObserver.streamsEnded(seen) >= streams)
  return scrape(app)
}

const UNITY = { "x-convoke-client": "unity/1.4.0" }
const UNITY_AGENT = { "user-agent": "UnityPlayer/2022.3.1f1 (UnityWebRequest/1.0, libcurl/8.4.0-DEV)" }
const BROWSER = {
  "user-agent":
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
}
const MOBILE = { "user-agent": "okhttp/4.12.0" }
const NODE = { "x-convoke-client": "node/0.3.0", "user-agent": "node" }

describe("ChatMetrics", () => {
  it("counts a scripted sequence of requests exactly", async () => {
    const store = switchableStore()
    const model = scriptedModel()
    const observer = TestObserver.make()
    const layer = Layer.mergeAll(
      store.layer,
      model.layer,
      Identity.layerAnonymous("alice"),
      ChatMetrics.layer(),
      observer.layer
    )
    await withApp(layer, async (app) => {
      const streamOf = async (response: Response) => {
        assert.strictEqual(response.status, 200)
        const frames = Sse.frames(await response.text())
        assert.strictEqual(Sse.withoutId(frames.at(-1)!), "data: [DONE]")
        return frames
      }
      // Each step is one request and what it adds; a new case is one more step.
      const steps: Array<() => Promise<void>> = []
      let firstId = ""
      steps.push(async () => {
        // new conversation, no id (Unity, declared by header)
        const frames = await streamOf(await post(app, { message: "hello", stream: true }, UNITY))
        firstId = Sse.data(frames[0]!).conversation_id
      })
      steps.push(async () => {
        // explicit "new" (Unity, by User-Agent)
        await streamOf(await post(app, { message: "hi", stream: true, conversation_id: "new" }, UNITY_AGENT))
      })
      steps.push(async () => {
        // resume (Unity)
        const frames = await streamOf(
          await post(app, { message: "again", stream: true, conversation_id: firstId }, UNITY)
        )
        assert.strictEqual(Sse.data(frames[0]!).conversation_id, firstId)
      })
      steps.push(async () => {
        // malformed id, streaming: a new conversation (web)
        await streamOf(
          await post(app, { message: "x", stream: true, conversation_id: "not-a-uuid" }, BROWSER)
        )
      })
      steps.push(async () => {
        // unknown id, streaming: a new conversation (web)
        const unknown = "5f0c2b1e-8a4d-4c3b-9e2f-1a2b3c4d5e6f"
        await streamOf(await post(app, { message: "x", stream: true, conversation_id: unknown }, BROWSER))
      })
      steps.push(async () => {
        // malformed id, not streaming: 404 and nothing created (other)
        const response = await post(app, { message: "x", conversation_id: "not-a-uuid" })
        assert.strictEqual(response.status, 404)
        await response.text()
      })
      steps.push(async () => {
        // client disconnect after the first content event (mobile)
        const controller = new AbortController()
        const response = await post(app, { message: "hang", stream: true }, MOBILE, controller.signal)
        const reader = Sse.reader(response.body!)
        assert.strictEqual(Sse.data((await reader.next())!).type, "metadata")
        assert.strictEqual(Sse.data((await reader.next())!).type, "content")
        controller.abort()
        await reader.cancel().catch(() => {})
      })
      steps.push(async () => {
        // model error after one delta (mobile)
        const frames = await streamOf(await post(app, { message: "fail", stream: true }, MOBILE))
        assert.strictEqual(Sse.data(frames.at(-2)!).type, "error")
      })
      steps.push(async () => {
        // not streaming, new conversation (node)
        const response = await post(app, { message: "plain" }, NODE)
        assert.strictEqual(response.status, 200)
        await response.json()
      })
      steps.push(async () => {
        // store down: the stream starts on a temporary id, reconciled once the store is back (other)
        store.failing.on = true
        const frames = await streamOf(await post(app, { message: "x", stream: true }))
        assert.strictEqual(Sse.data(frames[0]!).temporary, true)
        store.failing.on = false
        await observer.until((seen) =>
          seen.conversationResolved.some((event) => event.source === "reconciled")
        )
      })
      steps.push(async () => {
        // not JSON: 400 (web)
        const response = await post(app, "{", BROWSER)
        assert.strictEqual(response.status, 400)
        await response.text()
      })
      for (const step of steps) await step()

      const metrics = await scrapeSettled(app, observer, 8)
      assert.deepStrictEqual(metrics.byLabel("conversations_created_total", "source"), {
        absent: 4,
        new: 1,
        invalid_id: 1,
        unknown_id: 1,
        temporary: 1,
        reconciled: 1
      })
      // Reconciliation is not a creation attempt: its delay is not a creation duration.
      assert.strictEqual(metrics.count("conversation_creation_duration_seconds"), 8)
      assert.strictEqual(metrics.value("conversations_resumed_total"), 1)
      assert.deepStrictEqual(metrics.byLabel("conversation_creation_failures_total", "reason"), {
        store_unavailable: 1
      })
      assert.deepStrictEqual(metrics.byLabel("metadata_event_emission_total", "temporary"), {
        false: 7,
        true: 1
      })
      assert.strictEqual(metrics.count("stream_start_latency_seconds"), 8)
      assert.deepStrictEqual(metrics.byLabel("stream_outcomes_total", "outcome"), {
        complete: 6,
        client_closed: 1,
        cancelled: 0,
        model_error: 1,
        store_error: 0,
        shutdown: 0,
        interrupted: 0
      })
      // Every turn that produced text: six replies, the hung one, the failed one, the plain one.
      assert.strictEqual(metrics.count("model_time_to_first_token_seconds"), 9)
      assert.strictEqual(metrics.value("streams_active"), 0)
      const requests = Object.fromEntries(
        metrics
          .family("chat_requests_total")
          .metrics.map((sample) => [
            `${sample.labels!.client} ${sample.labels!.status}`,
            Number(sample.value)
          ])
      )
      assert.deepStrictEqual(requests, {
        "unity 200": 3,
        "web 200": 2,
        "mobile 200": 2,
        "node 200": 1,
        "other 200": 1,
        "other 404": 1,
        "web 400": 1
      })
      // Histogram buckets are cumulative and end with every observation.
      const buckets = metrics.buckets("stream_start_latency_seconds")
      const bounds = Object.keys(buckets)
        .map((le) => (le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le)))
        .sort((a, b) => a - b)
      assert.deepStrictEqual(bounds, [...ChatMetrics.SLOW_BUCKETS, Number.POSITIVE_INFINITY])
      assert.strictEqual(buckets["+Inf"], 8)
      const counts = bounds.map(
        (bound) => buckets[bound === Number.POSITIVE_INFINITY ? "+Inf" : String(bound)]!
      )
      assert.deepStrictEqual(
        counts,
        [...counts].sort((a, b) => a - b)
      )
      // Types as Prometheus reads them.
      assert.strictEqual(metrics.family("conversations_created_total").type, "COUNTER")
      assert.strictEqual(metrics.family("streams_active").type, "GAUGE")
      assert.strictEqual(metrics.family("conversation_creation_duration_seconds").type, "HISTOGRAM")
    })
  })

  it("tracks streams that are open right now", async () => {
    const model = scriptedModel()
    const observer = TestObserver.make()
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      model.layer,
      Identity.layerAnonymous("alice"),
      ChatMetrics.layer(),
      observer.layer
    )
    await withApp(layer, async (app) => {
      const response = await post(app, { message: "hang", stream: true })
      const reader = Sse.reader(response.body!)
      assert.strictEqual(Sse.data((await reader.next())!).type, "metadata")
      assert.strictEqual(Sse.data((await reader.next())!).type, "content")
      assert.strictEqual((await scrape(app)).value("streams_active"), 1)
      await reader.cancel()
      assert.strictEqual((await scrapeSettled(app, observer, 1)).value("streams_active"), 0)
    })
  })

  it("counts a client that leaves right after the metadata event as client_closed", async () => {
    const observer = TestObserver.make()
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      scriptedModel().layer,
      Identity.layerAnonymous("alice"),
      ChatMetrics.layer(),
      observer.layer
    )
    await withApp(layer, async (app) => {
      const response = await post(app, { message: "hang", stream: true })
      const reader = Sse.reader(response.body!)
      assert.strictEqual(Sse.data((await reader.next())!).type, "metadata")
      await reader.cancel()
      const metrics = await scrapeSettled(app, observer, 1)
      assert.strictEqual(metrics.value("stream_outcomes_total", { outcome: "client_closed" }), 1)
      assert.strictEqual(metrics.value("metadata_event_emission_total", { temporary: "false" }), 1)
    })
  })

  it("counts a request whose client leaves before the response starts as status 499", async () => {
    const reached = Deferred.makeUnsafe<void>()
    const stuck = Layer.succeed(Identity.Identity, {
      name: "stuck",
      authenticate: () => Deferred.succeed(reached, undefined).pipe(Effect.andThen(Effect.never))
    })
    const metrics = ChatMetrics.make()
    const observer = TestObserver.make()
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      scriptedModel().layer,
      stuck,
      ChatMetrics.layer({ metrics }),
      observer.layer
    )
    await withApp(layer, async (app) => {
      const controller = new AbortController()
      const pending = post(app, { message: "hello" }, UNITY, controller.signal).catch(() => undefined)
      await Effect.runPromise(Deferred.await(reached))
      controller.abort()
      await pending
      await observer.until((seen) => seen.interrupted === 1)
      assert.strictEqual(
        Prometheus.parse(metrics.format()).value("chat_requests_total", { client: "unity", status: "499" }),
        1
      )
    })
  })

  it("keeps every application's counts apart, and out of the process-wide registry", async () => {
    const first = ChatMetrics.make()
    const second = ChatMetrics.make()
    const layerWith = (metrics: ChatMetrics.ChatMetrics) =>
      Layer.mergeAll(
        TestStore.make().layer,
        scriptedModel().layer,
        Identity.layerAnonymous("alice"),
        ChatMetrics.layer({ metrics })
      )
    await withApp(layerWith(first), (app) =>
      post(app, { message: "one", stream: true }).then((response) => response.text())
    )
    await withApp(layerWith(second), async () => {})
    assert.strictEqual(
      Prometheus.parse(first.format()).value("conversations_created_total", { source: "absent" }),
      1
    )
    assert.strictEqual(
      Prometheus.parse(second.format()).value("conversations_created_total", { source: "absent" }),
      0
    )
    const global = Metric.snapshotUnsafe(Context.empty() as Context.Context<never>).map((metric) => metric.id)
    for (const name of METRIC_NAMES) assert.notInclude(global, name)
  })

  it("left out: no /metrics route, no hooks, no middleware, nothing recorded", async () => {
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      scriptedModel().layer,
      Identity.layerAnonymous("alice")
    )
    await withApp(layer, async (app) => {
      await (await post(app, { message: "hello", stream: true })).text()
      const response = await app.handler(new Request("http://localhost/metrics"))
      assert.strictEqual(response.status, 404)
      assert.deepStrictEqual(await response.json(), { error: { type: "not_found", message: "Not found" } })
    })
    const context = await Effect.runPromise(Effect.context<never>())
    assert.strictEqual(Context.get(context, ChatHooks.ChatHooks), ChatHooks.noop)
    assert.deepStrictEqual(ChatExtension.fromContext(context), [])
    const global = Metric.snapshotUnsafe(context).map((metric) => metric.id)
    for (const name of METRIC_NAMES) assert.notInclude(global, name)
  })

  it("records without a route when path is false, and keeps the hooks given directly", async () => {
    const metrics = ChatMetrics.make()
    const seen: Array<string> = []
    const mine = Layer.succeed(ChatHooks.ChatHooks, {
      ...ChatHooks.noop,
      conversationResolved: (event) => Effect.sync(() => seen.push(event.source))
    })
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      scriptedModel().layer,
      Identity.layerAnonymous("alice"),
      mine,
      ChatMetrics.layer({ metrics, path: false })
    )
    await withApp(layer, async (app) => {
      await (await post(app, { message: "hello", stream: true })).text()
      assert.strictEqual((await app.handler(new Request("http://localhost/metrics"))).status, 404)
    })
    assert.deepStrictEqual(seen, ["absent"])
    assert.strictEqual(
      Prometheus.parse(metrics.format()).value("conversations_created_total", { source: "absent" }),
      1
    )
  })

  it("serves the metrics alone with ChatHttp.fromRoutes, for a separate port", async () => {
    const metrics = ChatMetrics.make()
    const handler = ChatHttp.toWebHandler(
      await Effect.runPromise(ChatHttp.fromRoutes([ChatMetrics.route(metrics)]))
    )
    const ok = await handler(new Request("http://localhost/metrics"))
    assert.strictEqual(ok.status, 200)
    assert.strictEqual(ok.headers.get("content-type"), ChatMetrics.CONTENT_TYPE)
    const parsed = Prometheus.parse(await ok.text())
    assert.deepStrictEqual(
      parsed.families.map((family) => family.name),
      METRIC_NAMES
    )
    const missing = await handler(new Request("http://localhost/other"))
    assert.strictEqual(missing.status, 404)
    assert.deepStrictEqual(await missing.json(), { error: { type: "not_found", message: "Not found" } })
    const post = await handler(new Request("http://localhost/metrics", { method: "POST" }))
    assert.strictEqual(post.status, 405)
    assert.strictEqual(post.headers.get("allow"), "GET")
  })

  describe("layerAbandonment", () => {
    const statistics = (
      answer: () => Effect.Effect<ConversationStatistics.Abandonment, ChatError.StoreUnavailable>
    ) => {
      const windows: Array<{ readonly from: Date; readonly to: Date }> = []
      const layer = Layer.succeed(ConversationStatistics.ConversationStatistics, {
        abandonment: (window) =>
          Effect.suspend(() => {
            windows.push(window)
            return answer()
          })
      })
      return { windows, layer }
    }
    const appLayer = (
      metrics: ChatMetrics.ChatMetrics,
      stats: Layer.Layer<ConversationStatistics.ConversationStatistics>
    ) =>
      Layer.mergeAll(
        TestStore.make().layer,
        scriptedModel().layer,
        Identity.layerAnonymous("alice"),
        ChatMetrics.layer({ metrics }),
        ChatMetrics.layerAbandonment({ metrics, lookback: "24 hours", grace: "1 hour" }).pipe(
          Layer.provide(stats)
        )
      )

    it("exports the store's abandonment over the window that ended a grace period ago", async () => {
      const metrics = ChatMetrics.make()
      const stats = statistics(() => Effect.succeed({ created: 8, abandoned: 2 }))
      const before = Date.now()
      await withApp(appLayer(metrics, stats.layer), async (app) => {
        const parsed = await scrape(app)
        assert.strictEqual(parsed.value("conversation_abandonment_rate"), 0.25)
        assert.strictEqual(parsed.value("conversation_abandonment_window_conversations"), 8)
        assert.strictEqual(parsed.family("conversation_abandonment_rate").type, "GAUGE")
      })
      const [window] = stats.windows
      const hour = 3_600_000
      assert.strictEqual(window!.to.getTime() - window!.from.getTime(), 24 * hour)
      assert.isAtLeast(window!.to.getTime(), before - hour)
      assert.isAtMost(window!.to.getTime(), Date.now() - hour)
    })

    it("is NaN when no conversation was created in the window", async () => {
      const metrics = ChatMetrics.make()
      const stats = statistics(() => Effect.succeed({ created: 0, abandoned: 0 }))
      await withApp(appLayer(metrics, stats.layer), async (app) => {
        const parsed = await scrape(app)
        assert.isNaN(parsed.value("conversation_abandonment_rate"))
        assert.strictEqual(parsed.value("conversation_abandonment_window_conversations"), 0)
      })
    })

    it("leaves the gauges out while the store cannot answer, and the application still starts", async () => {
      const metrics = ChatMetrics.make()
      const stats = statistics(() => Effect.fail(new ChatError.StoreUnavailable({ message: "down" })))
      await withApp(appLayer(metrics, stats.layer), async (app) => {
        const parsed = await scrape(app)
        assert.notInclude(
          parsed.families.map((family) => family.name),
          "conversation_abandonment_rate"
        )
        assert.strictEqual((await post(app, { message: "still works" })).status, 200)
      })
    })
  })
})
