/**
 * The reference server's `/metrics`, over real sockets with the embedded
 * PGlite store: exact counts after a scripted sequence of requests, the
 * exposition as Prometheus reads it (`promtool check metrics` when installed),
 * a separate metrics port, metrics off, JSON logs and OTLP trace export.
 */
import { execFileSync } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { TestObserver } from "@convoke/core/testing"
import * as Prometheus from "@convoke/prometheus-text"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import { Duration, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { load, SettingsError } from "../src/Settings.ts"
import {
  ADMIN_TOKEN,
  chat,
  events,
  frames,
  healthDetails,
  readAll,
  startServer,
  testSettings
} from "./helpers.ts"

const hasPromtool = (() => {
  try {
    execFileSync("promtool", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

const scrape = async (url: string) => {
  const response = await fetch(url)
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
  return response.text()
}

/**
 * Scrapes once `streams` streams have ended: their ends are recorded by
 * finalizers, after the client has its last byte. The observer is merged
 * after the server's metrics, so what it has seen has been counted.
 */
const settled = async (url: string, observer: TestObserver.TestObserver, streams: number) => {
  await observer.until((seen) => TestObserver.streamsEnded(seen) >= streams)
  const text = await scrape(url)
  return { text, metrics: Prometheus.parse(text) }
}

const withDataDir = () => mkdtemp(join(tmpdir(), "convoke-metrics-"))

describe("GET /metrics on the chat port (CONVOKE_METRICS=on, the default)", () => {
  let server: RunningServer
  let dataDir: string
  const observer = TestObserver.make()
  beforeAll(async () => {
    dataDir = await withDataDir()
    server = await startServer(
      {
        dataDir,
        logFormat: "off",
        shutdownGraceMs: 200,
        // A client that leaves ends its turn at once: the scripted disconnect counts as client_closed.
        chat: { ...testSettings().chat, disconnectGrace: Duration.zero }
      },
      { layer: observer.layer }
    )
  })
  afterAll(async () => {
    await server?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  it("shows exactly the counts of a scripted sequence of requests", async () => {
    expect(server.metricsUrl).toBe(`${server.url}/metrics`)
    const unity = { headers: { "x-convoke-client": "unity" } }
    const web = {
      headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0" }
    }
    let firstId = ""
    // One step per case; the expected counts below say what each adds.
    const steps: Array<() => Promise<void>> = [
      async () => {
        // new conversation
        const [metadata] = events(
          await readAll(await chat(server, { message: "hello", stream: true }, unity))
        )
        firstId = metadata!.conversation_id
      },
      async () => {
        // resume
        const [metadata] = events(
          await readAll(
            await chat(server, { message: "again", stream: true, conversation_id: firstId }, unity)
          )
        )
        expect(metadata!.conversation_id).toBe(firstId)
      },
      async () => {
        // explicit "new"
        await readAll(await chat(server, { message: "fresh", stream: true, conversation_id: "new" }, web))
      },
      async () => {
        // malformed id, streaming: created
        await readAll(await chat(server, { message: "x", stream: true, conversation_id: "nope" }, web))
      },
      async () => {
        // unknown id, streaming: created
        const unknown = "0b6f4c1e-5d0e-4a53-9a57-3c2f0f2b8c11"
        await readAll(await chat(server, { message: "x", stream: true, conversation_id: unknown }))
      },
      async () => {
        // malformed id, not streaming: 404, nothing created
        const response = await chat(server, { message: "x", conversation_id: "nope" })
        expect(response.status).toBe(404)
        await response.text()
      },
      async () => {
        // client disconnect after the first content event
        const controller = new AbortController()
        const response = await chat(
          server,
          { message: "one two three four five six seven eight", stream: true },
          { signal: controller.signal }
        )
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        let text = ""
        while (frames(text).length < 2) text += decoder.decode((await reader.read()).value, { stream: true })
        controller.abort()
        await reader.cancel().catch(() => {})
      }
    ]
    for (const step of steps) await step()

    const { text, metrics } = await settled(server.metricsUrl!, observer, 6)
    expect(metrics.byLabel("conversations_created_total", "source")).toEqual({
      absent: 2,
      new: 1,
      invalid_id: 1,
      unknown_id: 1,
      temporary: 0,
      reconciled: 0
    })
    expect(metrics.count("conversation_creation_duration_seconds")).toBe(5)
    expect(metrics.value("conversations_resumed_total")).toBe(1)
    expect(metrics.value("conversation_creation_failures_total", { reason: "store_unavailable" })).toBe(0)
    expect(metrics.byLabel("metadata_event_emission_total", "temporary")).toEqual({ false: 6, true: 0 })
    expect(metrics.count("stream_start_latency_seconds")).toBe(6)
    expect(metrics.byLabel("stream_outcomes_total", "outcome")).toEqual({
      complete: 5,
      client_closed: 1,
      cancelled: 0,
      model_error: 0,
      store_error: 0,
      shutdown: 0,
      interrupted: 0
    })
    expect(metrics.count("model_time_to_first_token_seconds")).toBe(6)
    expect(metrics.value("streams_active")).toBe(0)
    expect(metrics.value("chat_requests_total", { client: "unity", status: "200" })).toBe(2)
    expect(metrics.value("chat_requests_total", { client: "web", status: "200" })).toBe(2)
    expect(metrics.value("chat_requests_total", { client: "other", status: "200" })).toBe(2)
    expect(metrics.value("chat_requests_total", { client: "other", status: "404" })).toBe(1)
    expect(metrics.families.map((family) => family.name)).not.toContain("conversation_abandonment_rate")
    if (hasPromtool) {
      // Prometheus's own linter reads the exposition without complaint.
      expect(execFileSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" })).toBe("")
    }
  })
})

describe("CONVOKE_METRICS=host:port", () => {
  it("serves /metrics alone on its own port, and not on the chat port", async () => {
    const dataDir = await withDataDir()
    const observer = TestObserver.make()
    const server = await startServer(
      { dataDir, logFormat: "off", shutdownGraceMs: 200, metrics: { host: "127.0.0.1", port: 0 } },
      { layer: observer.layer }
    )
    try {
      expect(server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
      expect(new URL(server.metricsUrl!).port).not.toBe(String(server.port))
      await readAll(await chat(server, { message: "hello", stream: true }))
      const onChatPort = await fetch(`${server.url}/metrics`)
      expect(onChatPort.status).toBe(404)
      expect(await onChatPort.json()).toEqual({ error: { type: "not_found", message: "Not found" } })
      const { metrics } = await settled(server.metricsUrl!, observer, 1)
      expect(metrics.value("conversations_created_total", { source: "absent" })).toBe(1)
      expect(metrics.value("chat_requests_total", { client: "other", status: "200" })).toBe(1)
      const elsewhere = await fetch(new URL("/other", server.metricsUrl!))
      expect(elsewhere.status).toBe(404)
      // The admin port has the details of /health; the chat port only its status.
      const details = await (await fetch(new URL("/health", server.metricsUrl!))).json()
      expect(details).toMatchObject({ status: "ok", model: "echo", store: "pglite", identity: "anonymous" })
      expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: "ok" })
    } finally {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe("CONVOKE_ADMIN_TOKEN", () => {
  it("guards /metrics on the chat port and opens the details of /health to the token only", async () => {
    const dataDir = await withDataDir()
    const server = await startServer({
      dataDir,
      logFormat: "off",
      shutdownGraceMs: 200,
      adminToken: Redacted.make(ADMIN_TOKEN)
    })
    const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } })
    try {
      const anonymous = await fetch(`${server.url}/metrics`)
      expect(anonymous.status).toBe(401)
      expect((await anonymous.json()).error.type).toBe("unauthenticated")
      expect((await fetch(`${server.url}/metrics`, bearer("not-the-admin-token"))).status).toBe(401)
      const scraped = await fetch(`${server.url}/metrics`, bearer(ADMIN_TOKEN))
      expect(scraped.status).toBe(200)
      expect(await scraped.text()).toContain("conversations_created_total")
      expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: "ok" })
      expect(await (await fetch(`${server.url}/health`, bearer("not-the-admin-token"))).json()).toEqual({
        status: "ok"
      })
      expect(await healthDetails(server)).toMatchObject({ status: "ok", identity: "anonymous" })
      expect(server.summary.find(([label]) => label === "metrics")![1]).toContain("admin token")
      expect(server.summary.flat().join(" ")).not.toContain(ADMIN_TOKEN)
    } finally {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it("must be at least 16 characters without spaces, and is read from the environment only", () => {
    expect(load([], {}).adminToken).toBeUndefined()
    expect(Redacted.value(load([], { CONVOKE_ADMIN_TOKEN: ADMIN_TOKEN }).adminToken!)).toBe(ADMIN_TOKEN)
    expect(() => load([], { CONVOKE_ADMIN_TOKEN: "short" })).toThrow(/CONVOKE_ADMIN_TOKEN/)
    expect(() => load(["--admin-token", ADMIN_TOKEN], {})).toThrow()
  })
})

describe("CONVOKE_METRICS=off", () => {
  it("has no /metrics route", async () => {
    const dataDir = await withDataDir()
    const server = await startServer({ dataDir, logFormat: "off", shutdownGraceMs: 200, metrics: "off" })
    try {
      expect(server.metricsUrl).toBeUndefined()
      await readAll(await chat(server, { message: "hello", stream: true }))
      const response = await fetch(`${server.url}/metrics`)
      expect(response.status).toBe(404)
      expect(server.summary).toContainEqual(["metrics", "off"])
    } finally {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe("conversation_abandonment_rate", () => {
  it("is computed by PostgreSQL when DATABASE_URL is set, and absent on the embedded store", async () => {
    const database = await makeTestDatabase()
    const server = await startServer({ databaseUrl: database.url, logFormat: "off", shutdownGraceMs: 200 })
    try {
      const metrics = Prometheus.parse(await scrape(server.metricsUrl!))
      // Nothing is older than the one-hour grace period yet: an empty window.
      expect(metrics.value("conversation_abandonment_window_conversations")).toBe(0)
      expect(metrics.value("conversation_abandonment_rate")).toBeNaN()
      expect(metrics.family("conversation_abandonment_rate").type).toBe("GAUGE")
    } finally {
      await server.close()
      await database.drop()
    }
  })
})

describe("OTEL_EXPORTER_OTLP_ENDPOINT", () => {
  it("exports a server span per request to an OTLP/HTTP collector", async () => {
    const received: Array<any> = []
    const collector = createServer((request, response) => {
      let body = ""
      request.on("data", (chunk) => (body += chunk))
      request.on("end", () => {
        received.push({ path: request.url, body: JSON.parse(body) })
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve))
    const collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
    const dataDir = await withDataDir()
    const server = await startServer({
      dataDir,
      logFormat: "off",
      shutdownGraceMs: 200,
      otlpUrl: collectorUrl
    })
    let requestId: string | null = null
    try {
      const response = await chat(server, { message: "hello" }, { headers: { "x-request-id": "trace-me-1" } })
      requestId = response.headers.get("x-request-id")
      await response.json()
    } finally {
      // Closing flushes the exporter.
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
      await new Promise<void>((resolve) => collector.close(() => resolve()))
    }
    expect(requestId).toBe("trace-me-1")
    const spans = received
      .filter((request) => request.path === "/v1/traces")
      .flatMap((request) => request.body.resourceSpans)
      .flatMap((resource: any) => resource.scopeSpans)
      .flatMap((scope: any) => scope.spans)
    const span = spans.find((candidate: any) => candidate.name === "POST /api/v0.3/chat")
    expect(span).toBeDefined()
    const attributes = Object.fromEntries(
      span.attributes.map((attribute: any) => [attribute.key, Object.values(attribute.value)[0]])
    )
    expect(attributes["convoke.request_id"]).toBe("trace-me-1")
    expect(attributes["convoke.client"]).toBe("other")
    expect(Number(attributes["http.response.status_code"])).toBe(200)
  })
})

describe("observability settings", () => {
  it("reads CONVOKE_METRICS as on, off, port or host:port", () => {
    expect(load([], {}).metrics).toBe("on")
    expect(load([], { CONVOKE_METRICS: "off" }).metrics).toBe("off")
    expect(load([], { CONVOKE_METRICS: "9464" }).metrics).toEqual({ host: "127.0.0.1", port: 9464 })
    expect(load(["--metrics", "0.0.0.0:9464"], {}).metrics).toEqual({ host: "0.0.0.0", port: 9464 })
    expect(load([], { CONVOKE_METRICS: "[::1]:9464" }).metrics).toEqual({ host: "::1", port: 9464 })
  })

  it("reports every bad observability setting at once", () => {
    let error: unknown
    try {
      load([], {
        CONVOKE_METRICS: "sometimes",
        CONVOKE_LOG_FORMAT: "xml",
        OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318"
      })
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(SettingsError)
    expect((error as SettingsError).problems).toEqual([
      'CONVOKE_LOG_FORMAT (--log-format) must be pretty, json or off, got "xml"',
      "OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-url) must be an http:// or https:// URL",
      'CONVOKE_METRICS (--metrics) must be on, off, or [host:]port (0 picks a free port), got "sometimes"'
    ])
  })
})
