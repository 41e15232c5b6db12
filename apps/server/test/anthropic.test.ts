/**
 * The reference server with Claude: started from its settings with an API key
 * and the base URL of a fake Anthropic API on loopback (the real SDK talks to
 * it), storing into the real PostgreSQL. Deltas reach the client in order,
 * the fake receives the right model, history and system prompt, failures
 * before and after the first delta follow the wire contract, a client that
 * leaves closes the upstream connection, and a stall ends with an error event.
 */

import { FakeAnthropic } from "@convoke/anthropic/testing"
import { makeTestDatabase, type WriteWatch, watchWrites } from "@convoke/store-pg/testing"
import { Logger } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { start } from "../src/Server.ts"
import { load } from "../src/Settings.ts"
import { ADMIN_TOKEN, chat, events, frames, healthDetails, query, readAll } from "./helpers.ts"

const API_KEY = "sk-ant-test-server-0123456789abcdef"
const SYSTEM = "You are a terse assistant."

let fake: FakeAnthropic.FakeAnthropic
let database: Awaited<ReturnType<typeof makeTestDatabase>>
let server: RunningServer
let stallServer: RunningServer
let messageWrites: WriteWatch
let firstRequest = 0
/** Everything the main server logs: messages and annotations, one string per line. */
const logged: Array<string> = []
const recorder = Logger.map(Logger.formatStructured, (entry) => {
  logged.push(JSON.stringify(entry))
})

const settingsFor = (env: Record<string, string>) =>
  load([], {
    PORT: "0",
    DATABASE_URL: database.url,
    // Two servers in one process: each with its outbox in memory, not both on one journal.
    CONVOKE_DATA_DIR: "memory://",
    ANTHROPIC_API_KEY: API_KEY,
    ANTHROPIC_BASE_URL: fake.url,
    ANTHROPIC_SYSTEM_PROMPT: SYSTEM,
    CONVOKE_MODEL_RETRY_DELAY_MS: "1",
    // A client that leaves is waited for briefly, so the test that waits it out stays quick.
    CONVOKE_DISCONNECT_GRACE_MS: "200",
    CONVOKE_ADMIN_TOKEN: ADMIN_TOKEN,
    ...env
  })

beforeAll(async () => {
  fake = await FakeAnthropic.start()
  database = await makeTestDatabase()
  server = await start(settingsFor({}), { layer: Logger.layer([recorder], { mergeWithExisting: true }) })
  stallServer = await start(settingsFor({ CONVOKE_MODEL_IDLE_TIMEOUT_MS: "1000" }))
  // Started once the servers have migrated the database, before any message is written.
  messageWrites = await watchWrites(database.url, "convoke_messages", ["conversation_id", "role"])
})
afterAll(async () => {
  await server?.close()
  await stallServer?.close()
  await messageWrites?.close()
  await database?.drop()
  await fake?.close()
})
beforeEach(() => {
  firstRequest = fake.requests.length
})
const received = () => fake.requests.slice(firstRequest)

const sql = <A extends object>(text: string, params: ReadonlyArray<unknown> = []) =>
  query<A>(database.url, text, params)

interface StoredMessage {
  readonly role: string
  readonly content: string
  readonly status: string
  readonly metadata: Record<string, any> | null
}
const storedMessages = (conversationId: string) =>
  sql<StoredMessage>(
    "SELECT role, content, status, metadata FROM convoke_messages WHERE conversation_id = $1 ORDER BY seq",
    [conversationId]
  )
/** The stored messages once the assistant reply is there (it is written as the stream ends). */
const storedReply = async (conversationId: string) => {
  await messageWrites.written((row) => row.conversation_id === conversationId && row.role === "assistant")
  return storedMessages(conversationId)
}

const overloaded = (): FakeAnthropic.Reply => ({
  status: 529,
  body: FakeAnthropic.fixture("overloaded.json")
})

describe("reference server with Claude", () => {
  it("says so in its banner and /health", async () => {
    expect(server.summary.find(([label]) => label === "model")![1]).toContain("anthropic claude-sonnet-5-5")
    expect(server.summary.flat().join(" ")).not.toContain(API_KEY)
    const health = await healthDetails(server)
    expect(health.model).toBe("anthropic")
  })

  it("streams Claude's deltas as content events in order, and sends model, history and system prompt", async () => {
    const first = await readAll(
      await chat(server, { message: "Hi", model: "claude-sonnet-4-5", stream: true })
    )
    const [metadata, ...content] = events(first)
    expect(metadata!.type).toBe("metadata")
    expect(content).toEqual([
      { type: "content", delta: { content: "Hello" } },
      { type: "content", delta: { content: " there" } },
      { type: "content", delta: { content: ", how can I help?" } }
    ])
    expect(first.at(-1)).toBe("[DONE]")
    expect(received()[0]!.body).toEqual({
      model: "claude-sonnet-5-5",
      max_tokens: 4096,
      stream: true,
      system: SYSTEM,
      messages: [{ role: "user", content: "Hi" }]
    })

    const conversationId = metadata!.conversation_id
    const stored = await storedReply(conversationId)
    expect(stored.at(-1)).toMatchObject({
      role: "assistant",
      content: "Hello there, how can I help?",
      status: "complete",
      metadata: {
        model: "claude-sonnet-5-5",
        stopReason: "end_turn",
        usage: { inputTokens: 25, outputTokens: 12 }
      }
    })

    const second = await chat(server, { message: "And again?", conversation_id: conversationId })
    expect(second.status).toBe(200)
    expect((await second.json()).message.content).toBe("Hello there, how can I help?")
    expect(received()[1]!.body.messages).toEqual([
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello there, how can I help?" },
      { role: "user", content: "And again?" }
    ])
  })

  it("rejects an unknown model with a 400 before anything starts", async () => {
    const response = await chat(server, { message: "Hi", model: "gpt-4", stream: true })
    expect(response.status).toBe(400)
    expect((await response.json()).error.type).toBe("invalid_request")
    expect(received()).toHaveLength(0)
  })

  it("retries 529 and 429 before the first byte, then answers", async () => {
    fake.enqueue(overloaded(), {
      status: 429,
      body: FakeAnthropic.fixture("rate-limit.json"),
      headers: { "retry-after": "0" }
    })
    const payloads = await readAll(await chat(server, { message: "Hi", stream: true }))
    expect(
      events(payloads)
        .slice(1)
        .map((event) => event.delta.content)
        .join("")
    ).toBe("Hello there, how can I help?")
    expect(received()).toHaveLength(3)
  })

  it("answers 503 with overloaded_error when every attempt is overloaded (stream: false)", async () => {
    fake.enqueue(overloaded(), overloaded(), overloaded())
    const response = await chat(server, { message: "Hi" })
    expect(response.status).toBe(503)
    expect(await response.json()).toEqual({
      error: { type: "overloaded_error", message: "The model is overloaded; try again later" }
    })
    expect(received()).toHaveLength(3)
  })

  it("sends metadata, then the error event and [DONE], when every attempt is overloaded (stream: true)", async () => {
    fake.enqueue(overloaded(), overloaded(), overloaded())
    const payloads = await readAll(await chat(server, { message: "Hi", stream: true }))
    const [metadata, error] = events(payloads)
    expect(metadata!.type).toBe("metadata")
    expect(error).toEqual({
      type: "error",
      error: { type: "overloaded_error", message: "The model is overloaded; try again later" }
    })
    expect(payloads.at(-1)).toBe("[DONE]")
    expect(received()).toHaveLength(3)
  })

  it("ends with the error event and [DONE] on an error mid-stream, and stores the partial reply as error", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("error-mid-stream.sse") })
    const payloads = await readAll(await chat(server, { message: "Tell me a story", stream: true }))
    const [metadata, ...rest] = events(payloads)
    expect(rest).toEqual([
      { type: "content", delta: { content: "The first" } },
      { type: "content", delta: { content: " half" } },
      {
        type: "error",
        error: { type: "overloaded_error", message: "The model is overloaded; try again later" }
      }
    ])
    expect(payloads.at(-1)).toBe("[DONE]")
    expect(received()).toHaveLength(1)
    const stored = await storedReply(metadata!.conversation_id)
    expect(stored.at(-1)).toMatchObject({ role: "assistant", content: "The first half", status: "error" })
  })

  it("closes the upstream connection once the client has been gone for the grace window, and stores the partial reply as cancelled", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("hello.sse").slice(0, 4), afterwards: "stall" })
    const controller = new AbortController()
    const response = await chat(server, { message: "Hi", stream: true }, { signal: controller.signal })
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    while (!text.includes('"type":"content"')) text += decoder.decode((await reader.read()).value)
    const metadata = JSON.parse(frames(text)[0]!)
    const upstream = await fake.requestArrived(firstRequest + 1)
    controller.abort()
    await upstream.connectionClosed
    const stored = await storedReply(metadata.conversation_id)
    expect(stored.at(-1)).toMatchObject({ role: "assistant", content: "Hello", status: "cancelled" })
  })

  it("ends a stalled upstream with a timeout_error event and [DONE]", async () => {
    fake.enqueue({ frames: FakeAnthropic.frames("hello.sse").slice(0, 4), afterwards: "stall" })
    const payloads = await readAll(await chat(stallServer, { message: "Hi", stream: true }))
    const [metadata, ...rest] = events(payloads)
    expect(rest[0]).toEqual({ type: "content", delta: { content: "Hello" } })
    expect(rest.at(-1)).toMatchObject({ type: "error", error: { type: "timeout_error" } })
    expect(payloads.at(-1)).toBe("[DONE]")
    await received()[0]!.connectionClosed
    const stored = await storedReply(metadata!.conversation_id)
    expect(stored.at(-1)).toMatchObject({ content: "Hello", status: "error" })
  })

  it("sends a fixed message per error type, never the upstream text, which goes to the log only", async () => {
    const secret = "internal-db.corp:5432 token=tok_9f8e7d6c5b4a"
    const upstream = (type: string, status: number): FakeAnthropic.Reply => ({
      status,
      body: JSON.stringify({ type: "error", error: { type, message: `${type}: ${secret}` } })
    })
    // Before the stream starts (not retried), as the status and body of a non-streaming request.
    fake.enqueue(upstream("invalid_request_error", 400))
    const response = await chat(server, { message: "Hi" })
    const body = await response.json()
    expect(body.error.type).toBe("invalid_request_error")
    expect(JSON.stringify(body)).not.toContain("tok_9f8e7d6c5b4a")
    expect(JSON.stringify(body)).not.toContain("internal-db")

    // As the SSE error event: before the first delta, and mid-stream.
    fake.enqueue(upstream("permission_error", 403))
    const early = events(await readAll(await chat(server, { message: "Hi", stream: true })))
    expect(early.at(-1)).toMatchObject({ type: "error", error: { type: "permission_error" } })
    expect(JSON.stringify(early)).not.toContain("tok_9f8e7d6c5b4a")
    const midStream = FakeAnthropic.frames("error-mid-stream.sse")
    midStream[midStream.length - 1] =
      `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "overloaded_error", message: `Overloaded near ${secret}` } })}\n\n`
    fake.enqueue({ frames: midStream })
    const late = events(await readAll(await chat(server, { message: "Hi", stream: true })))
    expect(late.at(-1)).toMatchObject({ type: "error", error: { type: "overloaded_error" } })
    expect(JSON.stringify(late)).not.toContain("tok_9f8e7d6c5b4a")

    // The log has what the API said, for the operator.
    const log = logged.join("\n")
    expect(log).toContain(`invalid_request_error: ${secret}`)
    expect(log).toContain(`permission_error: ${secret}`)
    expect(log).toContain(`Overloaded near ${secret}`)
  })

  it("never shows the API key in responses or events", async () => {
    fake.enqueue({
      status: 401,
      body: JSON.stringify({
        type: "error",
        error: { type: "authentication_error", message: `bad key ${API_KEY}` }
      })
    })
    const response = await chat(server, { message: "Hi", stream: true })
    const body = await response.text()
    expect(body).toContain("authentication_error")
    expect(body).not.toContain(API_KEY)
  })
})
