/**
 * The operational part of the wire contract and the edges of the route
 * table (the README's `GET /health`, "Operations" and error table):
 * `/health` with its documented fields, `/metrics` in the Prometheus text
 * format counting the binding's own chats, the OpenAPI document to anyone, a path Convoke does not serve
 * (Convoke's 404, or the application's own fallback where the binding is
 * mounted beside the application's routes), wrong methods on known paths,
 * and a request body that stops arriving (408, connection closed).
 *
 * @since 0.1.0
 */
import { connect } from "node:net"
import { ChatHttp, OpenApi } from "@convoke/core"
import * as PrometheusText from "@convoke/prometheus-text"
import { describe, expect, it } from "vitest"
import * as Sse from "./Sse.ts"
import { ADMIN_HEADERS, ADMIN_TOKEN, expectError, ISO_DATE, KEYS, type Suite } from "./Suite.ts"

/** Convoke's answer to a path it does not serve. */
const NOT_FOUND = '{"error":{"type":"not_found","message":"Not found"}}'

/**
 * The series the README's metrics table documents, each known label value
 * exported from the start (histograms by their `_count`). The abandonment
 * gauges are left out: they exist only with `ChatMetrics.layerAbandonment`.
 */
const DOCUMENTED_SERIES: ReadonlyArray<readonly [string, Record<string, string>?]> = [
  ...["absent", "new", "invalid_id", "unknown_id", "temporary", "reconciled"].map(
    (source) => ["conversations_created_total", { source }] as const
  ),
  ["conversations_resumed_total"],
  ["conversation_creation_failures_total", { reason: "store_unavailable" }],
  ["conversation_creation_duration_seconds_count"],
  ["metadata_event_emission_total", { temporary: "true" }],
  ["metadata_event_emission_total", { temporary: "false" }],
  ["stream_start_latency_seconds_count"],
  ["streams_active"],
  ...["complete", "client_closed", "cancelled", "model_error", "store_error", "shutdown", "interrupted"].map(
    (outcome) => ["stream_outcomes_total", { outcome }] as const
  ),
  ["model_time_to_first_token_seconds_count"],
  ...["replayed", "no_turn", "not_found"].map((outcome) => ["turn_resumes_total", { outcome }] as const),
  ...["true", "false"].map((running) => ["turn_stop_requests_total", { running }] as const),
  ["turn_log_turns"],
  ["turn_log_events"],
  ["turn_log_dropped_events"],
  ["turn_log_bytes"],
  ["authentication_failures_total"],
  ...["user", "address", "failures", "concurrent"].map(
    (limit) => ["rate_limited_requests_total", { limit }] as const
  ),
  ...["unity", "web", "mobile", "other"].map(
    (client) => ["chat_requests_total", { client, status: "200" }] as const
  )
]

/** Defines the operational tests in a `describe` block of their own. */
export const define = (suite: Suite) =>
  describe("health, metrics and the route table", () => {
    it("answers /health with only its status to anyone, a user's key and a wrong token included", async () => {
      for (const [label, options] of [
        ["no credentials", { user: null }],
        ["a user's key", { user: "alice" }],
        ["a wrong token", { user: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } }]
      ] as const) {
        const response = await suite.request("/health", options)
        expect(response.status, label).toBe(200)
        expect(response.headers.get("content-type"), label).toMatch(/^application\/json/)
        expect(await response.text(), label).toBe('{"status":"ok"}')
      }
    })

    it("answers /metrics only to the admin token: 401 with the common body otherwise", async () => {
      for (const [label, options] of [
        ["no credentials", { user: null }],
        ["a user's key", { user: "alice" }]
      ] as const) {
        await expectError(await suite.request("/metrics", options), 401, "unauthenticated", label)
      }
    })

    it("answers /health with the admin token: status ok and the documented fields", async () => {
      const response = await suite.request("/health", { user: null, headers: ADMIN_HEADERS })
      expect(response.status, "GET /health").toBe(200)
      expect(response.headers.get("content-type")).toMatch(/^application\/json/)
      const health = await response.json()
      expect(health).toEqual({
        status: "ok",
        // The suite's model: the binding serves the application it was given.
        model: "conformance",
        store: expect.stringMatching(/./),
        identity: expect.stringMatching(/./),
        // The suite runs on a healthy store: nothing waits to be written.
        outbox: {
          pending: 0,
          drained: expect.any(Number),
          dropped: 0,
          // Found at start in a persistence an earlier run left; nothing damaged.
          recovered: expect.any(Number),
          skipped: 0
        },
        // Present only where the cleanup job runs (the reference server).
        ...(health.cleanup === undefined
          ? {}
          : {
              cleanup: {
                ran_at: expect.stringMatching(ISO_DATE),
                deleted: expect.any(Number),
                abandonment_ratio: health.cleanup.abandonment_ratio === null ? null : expect.any(Number)
              }
            })
      })
    })

    it("serves /metrics in the Prometheus text format, counting this binding's chats in the documented series", async () => {
      const scrape = async () => {
        // Scraped as Prometheus does, with the admin token as its bearer token.
        const response = await suite.request("/metrics", { user: null, headers: ADMIN_HEADERS })
        expect(response.status, "GET /metrics").toBe(200)
        expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
        return PrometheusText.parse(await response.text())
      }
      const before = await scrape()
      for (const [name, labels] of DOCUMENTED_SERIES) {
        expect(before.sample(name, labels), `${name} ${JSON.stringify(labels ?? {})}`).toEqual(
          expect.any(Number)
        )
      }
      // "p95 above 500 ms" is decided by a bucket bound (the README's alerts).
      expect(before.sample("stream_start_latency_seconds_bucket", { le: "0.5" })).toEqual(expect.any(Number))

      // Counted apart from every other test's requests: only these say they come from Unity.
      const unity = { headers: { "x-convoke-client": "unity" } }
      const events = Sse.events(
        await Sse.readAll(await suite.chat({ message: "metered", stream: true }, unity))
      )
      const resumed = await suite.chat(
        { message: "again", conversation_id: events[0]!.conversation_id },
        unity
      )
      expect(resumed.status).toBe(200)
      await resumed.json()
      expect((await suite.chat({ message: "" }, unity)).status).toBe(400)
      const after = await scrape()

      const increase = (name: string, labels: Record<string, string> = {}) =>
        (after.sample(name, labels) ?? 0) - (before.sample(name, labels) ?? 0)
      expect(increase("conversations_created_total", { source: "absent" })).toBe(1)
      expect(increase("conversations_resumed_total")).toBe(1)
      expect(increase("conversation_creation_duration_seconds_count")).toBe(1)
      // Only a stream has a metadata event.
      expect(increase("metadata_event_emission_total", { temporary: "false" })).toBe(1)
      expect(increase("metadata_event_emission_total", { temporary: "true" })).toBe(0)
      expect(increase("stream_start_latency_seconds_count")).toBe(1)
      const startSeconds = increase("stream_start_latency_seconds_sum")
      expect(startSeconds).toBeGreaterThanOrEqual(0)
      expect(startSeconds).toBeLessThan(10)
      expect(increase("chat_requests_total", { client: "unity", status: "200" })).toBe(2)
      expect(increase("chat_requests_total", { client: "unity", status: "400" })).toBe(1)
      expect(after.sample("streams_active")).toBeGreaterThanOrEqual(0)
    })

    it("serves the OpenAPI document to anyone, as the core builds it", async () => {
      for (const [label, options] of [
        ["no credentials", { user: null }],
        ["a user's key", { user: "alice" }]
      ] as const) {
        const response = await suite.request(OpenApi.OPENAPI_PATH, options)
        expect(response.status, label).toBe(200)
        expect(response.headers.get("content-type"), label).toMatch(/^application\/json/)
        expect(await response.json(), label).toEqual(JSON.parse(JSON.stringify(OpenApi.make())))
      }
      const head = await suite.request(OpenApi.OPENAPI_PATH, { user: null, method: "HEAD" })
      expect(head.status, "HEAD").toBe(200)
      await expectError(
        await suite.request(OpenApi.OPENAPI_PATH, { user: null, method: "POST", body: {} }),
        405,
        "method_not_allowed",
        "POST"
      )
    })

    it("answers a path it does not serve with Convoke's 404, or hands it to the application's own fallback", async () => {
      const fallback = suite.target.applicationFallback
      for (const [method, path] of [
        ["GET", "/no-such-route"],
        ["GET", "/api/v0.3/no-such-route"],
        ["POST", "/api/v0.3/no-such-route"],
        ["GET", `/api/v0.3/conversations/${crypto.randomUUID()}/no-such-route`],
        // A path that starts with `//` is a path on this server, never a URL of another host
        // (`new URL("//evil.example/health", base)` would route it as `/health`).
        ["GET", "//evil.example/health"],
        ["POST", `//evil.example${ChatHttp.CHAT_PATH}`]
      ] as const) {
        const label = `${method} ${path}`
        const response = await suite.request(path, { method })
        // Read as text: the application's fallback need not be JSON.
        const body = await response.text()
        if (fallback === undefined) {
          expect(response.status, label).toBe(404)
          expect(response.headers.get("content-type"), label).toMatch(/^application\/json/)
          expect(body, label).toBe(NOT_FOUND)
        } else {
          // The binding let the request through to the application's next handler.
          expect(response.status, label).toBe(fallback.status)
          expect(body, label).toBe(fallback.body)
        }
      }
    })

    // Only where Convoke reads the body itself: a runtime that buffers it (Lambda) times it out on its own.
    if (suite.capabilities.bufferedBody !== true)
      it("answers a chat body that stops arriving with 408 and the common body, then closes the connection", async () => {
        const url = new URL(`${suite.target.url}${ChatHttp.CHAT_PATH}`)
        // Sent as text/plain, as the seed's browser snippet does: a framework's JSON
        // parser (express.json()) leaves it to Convoke.
        const head = [
          `POST ${url.pathname} HTTP/1.1`,
          `host: ${url.host}`,
          `authorization: Bearer ${KEYS.alice}`,
          "content-type: text/plain",
          "content-length: 100",
          "",
          ""
        ].join("\r\n")
        const received = await new Promise<string>((resolve, reject) => {
          const socket = connect(Number(url.port), url.hostname)
          let text = ""
          socket.setEncoding("utf8")
          socket.on("data", (chunk: string) => {
            text += chunk
          })
          socket.on("error", reject)
          socket.once("close", () => resolve(text))
          // Part of the body, then nothing.
          socket.once("connect", () => socket.write(`${head}{"message":"he`))
        })
        expect(received).toMatch(/^HTTP\/1\.1 408 /)
        const body = received.slice(received.indexOf("\r\n\r\n") + 4)
        // Chunked or not, the common body is in there.
        expect(body).toMatch(/\{"error":\{"type":"request_timeout","message":"[^"]+"\}\}/)
      })

    it("answers a wrong method on a known path with 405, Allow and the common body", async () => {
      for (const method of ["GET", "PUT", "PATCH", "DELETE"]) {
        const response = await suite.request(ChatHttp.CHAT_PATH, { method })
        expect(response.headers.get("allow"), method).toBe("POST")
        await expectError(response, 405, "method_not_allowed", method)
      }
      // Every route of the table, not only chat: Allow lists what the path serves.
      for (const [method, path, allow] of [
        ["POST", "/health", "GET"],
        ["POST", "/metrics", "GET"],
        ["DELETE", "/api/v0.3/conversations", "GET"],
        ["POST", `/api/v0.3/conversations/${crypto.randomUUID()}`, "GET, PATCH, DELETE"],
        ["PUT", `/api/v0.3/conversations/${crypto.randomUUID()}`, "GET, PATCH, DELETE"]
      ] as const) {
        const label = `${method} ${path}`
        const response = await suite.request(path, { method, body: {} })
        expect(response.headers.get("allow"), label).toBe(allow)
        await expectError(response, 405, "method_not_allowed", label)
      }
    })
  })
