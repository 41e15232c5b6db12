/**
 * A property-based fuzz of the whole request surface: ten thousand random and
 * malformed requests (methods, paths, headers, content types, credentials,
 * bodies, unicode, invalid UTF-8, deep nesting, oversized bodies) sent over
 * keep-alive sockets to a running reference server on a real PostgreSQL
 * database, a few at a time, plus raw malformed HTTP on bare sockets.
 *
 * The properties: no 5xx, every error is the common body, nothing crashes,
 * every conversation row belongs to a request that succeeded, and the server
 * still answers correctly afterwards.
 *
 * A second fuzz aims at the conversation API (list, get, rename, delete),
 * resume (`GET …/stream` with random `Last-Event-ID`s and `?last_event_id=`)
 * and stop, with ids of the fuzzer's own conversations, another user's, and
 * random and malformed ones: no 5xx, the common error body, and no row
 * created, changed or deleted that should not be — the other user's
 * conversations come out exactly as they went in.
 */
import { Agent, request as httpRequest } from "node:http"
import { connect } from "node:net"
import { makeTestDatabase, type TestDatabase } from "@convoke/store-pg/testing"
import { Duration } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { chat, events, query, readAll, startServer, testSettings, UUID_V4 } from "./helpers.ts"

const KEY = "fuzz-key-0123456789abcdef-ghijklmnopqrstuvwxyz"
const VICTIM_KEY = "fuzz-victim-key-0123456789-ghijklmnopqrstuvwxyz"
const REQUESTS = 10_000
const CONVERSATION_REQUESTS = 2_000
const CONCURRENCY = 8
const RAW_REQUESTS = 300

let database: TestDatabase
let server: RunningServer
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })

beforeAll(async () => {
  database = await makeTestDatabase()
  server = await startServer({
    databaseUrl: database.url,
    apiKeys: [
      { key: KEY, userId: "fuzzer" },
      { key: VICTIM_KEY, userId: "victim" }
    ],
    echoDelayMs: 0,
    security: { securityHeaders: true, cors: { allowedOrigins: ["https://app.example"] } },
    chat: { ...testSettings().chat, maxMessageCharacters: 2000 },
    // Limits on, but out of reach: the fuzz exercises the limiter without being stopped by it.
    rateLimit: {
      ...testSettings().rateLimit,
      user: { limit: 1_000_000, window: Duration.seconds(60) },
      address: { limit: 1_000_000, window: Duration.seconds(60) },
      concurrent: 1000
    }
  })
})

afterAll(async () => {
  agent.destroy()
  await server?.close()
  await database?.drop()
})

interface Sent {
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: Uint8Array | undefined
}

interface Received {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

/** Sends a request; a connection the server closed before answering is status 0, with the error. */
const send = (sent: Sent, retried = false): Promise<Received> =>
  new Promise((resolve) => {
    let settled = false
    const settle = (received: Received | Promise<Received>) => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      resolve(received)
    }
    const outgoing = httpRequest(
      {
        host: "127.0.0.1",
        port: server.port,
        method: sent.method,
        path: sent.path,
        headers: sent.headers,
        agent
      },
      (incoming) => {
        const chunks: Array<Buffer> = []
        incoming.on("data", (chunk: Buffer) => chunks.push(chunk))
        incoming.on("end", () =>
          settle({
            status: incoming.statusCode ?? 0,
            headers: incoming.headers,
            body: Buffer.concat(chunks).toString("utf8")
          })
        )
        incoming.on("error", reject)
      }
    )
    // A kept-alive socket the server closed just as it was reused fails before
    // the request reaches the server; Node's documented remedy is one retry.
    function reject(error: Error) {
      if (settled) return
      if (outgoing.reusedSocket && !retried) settle(send(sent, true))
      else settle({ status: 0, headers: {}, body: String(error) })
    }
    outgoing.on("error", reject)
    // An answer that does not end in time fails its request, named, instead of stalling the whole
    // batch. A deadline, not the socket's idle timeout: a stream's heartbeats keep that from firing.
    const deadline = setTimeout(() => {
      settle({ status: 0, headers: {}, body: `no whole answer within ${ANSWER_TIMEOUT_MILLIS} ms` })
      outgoing.destroy()
    }, ANSWER_TIMEOUT_MILLIS)
    outgoing.end(sent.body === undefined ? undefined : Buffer.from(sent.body))
  })

/**
 * Every answer here ends within seconds (whole bodies, a model with no delay):
 * one not over by then is a hang, reported with its request. Streams send a
 * heartbeat every 15 s, so a hung one is never idle for this long.
 */
const ANSWER_TIMEOUT_MILLIS = 45_000

const encoder = new TextEncoder()
const text = (value: string) => encoder.encode(value)

/** Printable ASCII: what Node lets a client put in a header value. */
const headerValue = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map(String.fromCharCode),
  maxLength: 64
})
const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/)

const method = fc.oneof(
  { weight: 12, arbitrary: fc.constant("POST") },
  { weight: 4, arbitrary: fc.constantFrom("GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD") },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Z]{1,12}$/) }
)

const path = fc.oneof(
  { weight: 12, arbitrary: fc.constant("/api/v0.3/chat") },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "/health",
      "/",
      "/api/v0.3/chat/",
      "/API/v0.3/chat",
      "/api/v0.3/chat?stream=true",
      "/api/v0.3/chat#x",
      "//api/v0.3/chat",
      "/api/v0.3/chat/../chat",
      "/api/v0.3/conversations",
      "/api/v0.3/conversations/00000000-0000-4000-8000-000000000000",
      "/api/v0.3/conversations/00000000-0000-4000-8000-000000000000/stream",
      "/api/v0.3/conversations/00000000-0000-4000-8000-000000000000/stream?last_event_id=%00:1",
      "/api/v0.3/conversations/00000000-0000-4000-8000-000000000000/stop",
      "/api/v0.3/conversations/not-a-uuid/stream",
      "/api/v0.3/conversations//stop",
      "/api/v0.3/ws",
      "/api/v0.3/ws?ticket=AAAA",
      "/api/v0.3/ws/ticket",
      "/%00",
      "/..%2f..%2fetc%2fpasswd",
      "/%E2%82%AC%F0%9F%98%80",
      "/%ff%fe",
      `/${"a".repeat(4000)}`
    )
  },
  { weight: 1, arbitrary: fc.webPath().map((value) => (value.startsWith("/") ? value : `/${value}`)) }
)

const contentType = fc.constantFrom(
  undefined,
  "application/json",
  "application/json; charset=utf-8",
  "text/plain;charset=UTF-8",
  "application/vnd.api+json",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "text/html",
  "application/json; charset=utf-16",
  "*/*",
  ";;;",
  ""
)

const credential = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ authorization: `Bearer ${KEY}` }) },
  { weight: 2, arbitrary: fc.constant({ "x-api-key": KEY }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      {},
      { authorization: "Bearer" },
      { authorization: `Bearer ${KEY}x` },
      { authorization: `bearer  ${KEY}` },
      { authorization: "Basic Zm9vOmJhcg==" },
      { authorization: `Bearer ${KEY} extra` },
      { authorization: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl" },
      { authorization: "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0." },
      { authorization: `Bearer cvk_${"A".repeat(43)}` },
      { "x-api-key": "" },
      { "x-api-key": "x".repeat(8000) },
      { authorization: "Basic x", "x-api-key": KEY }
    )
  },
  { weight: 1, arbitrary: headerValue.map((value) => ({ authorization: value })) }
)

const extraHeaders = fc
  .tuple(
    fc.dictionary(
      token.filter(
        (name) =>
          !["content-length", "transfer-encoding", "host", "connection", "expect"].includes(
            name.toLowerCase()
          )
      ),
      headerValue,
      { maxKeys: 4 }
    ),
    // The resume route reads it; any value must get a 4xx at worst.
    fc.option(
      fc.oneof(headerValue, fc.constantFrom("00000000-0000-4000-8000-000000000000:1", ":", "x:99999999999")),
      { nil: undefined }
    )
  )
  .map(([headers, lastEventId]) =>
    lastEventId === undefined ? headers : { ...headers, "last-event-id": lastEventId }
  )

const unicode = fc.string({ unit: "binary", maxLength: 300 })
const weirdString = fc.oneof(
  unicode,
  fc.constantFrom("", " ", "\u0000", "\ud800", "\udfff", "😀".repeat(1500), "a".repeat(2001), "new", "null")
)

const chatObject = fc.record(
  {
    message: fc.oneof({ weight: 4, arbitrary: weirdString }, { weight: 1, arbitrary: fc.jsonValue() }),
    stream: fc.oneof(fc.boolean(), fc.jsonValue()),
    conversation_id: fc.oneof(
      fc.constantFrom(null, "", "new", "00000000-0000-4000-8000-000000000000"),
      fc.uuid(),
      weirdString,
      fc.jsonValue()
    ),
    model: fc.oneof(fc.constantFrom("claude-sonnet-4-5", "unified-chat", "echo"), weirdString),
    extra: fc.jsonValue({ maxDepth: 3 })
  },
  { requiredKeys: [] }
)

const body = fc.oneof(
  { weight: 8, arbitrary: chatObject.map((value) => text(JSON.stringify(value))) },
  { weight: 2, arbitrary: fc.jsonValue().map((value) => text(JSON.stringify(value))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) },
  { weight: 1, arbitrary: unicode.map(text) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1, max: 20_000 })
      .map((depth) => text(`{"message":"x","a":${"[".repeat(depth)}${"]".repeat(depth)}}`))
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      text(""),
      text("null"),
      text('{"message":"x"'),
      text('{"message":"x"}{"message":"y"}'),
      text(`{"message":"${"x".repeat(40_000)}"}`),
      new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]),
      text('{"__proto__":{"polluted":1},"message":"x"}'),
      text('{"constructor":{"prototype":{"x":1}},"message":"x"}')
    )
  },
  { weight: 1, arbitrary: fc.constant(undefined) }
)

const requestArbitrary: fc.Arbitrary<Sent> = fc
  .record({ method, path, contentType, credential, extraHeaders, body })
  .map(({ method, path, contentType, credential, extraHeaders, body }) => {
    const headers: Record<string, string> = { ...extraHeaders, ...credential }
    if (contentType !== undefined) headers["content-type"] = contentType
    const hasBody = method !== "GET" && method !== "HEAD" && body !== undefined
    // Framed as real clients frame it: Node sends a GET/OPTIONS/DELETE body with no length otherwise.
    if (hasBody) headers["content-length"] = String(body.byteLength)
    return { method, path, headers, body: hasBody ? body : undefined }
  })

const isErrorBody = (value: unknown): boolean => {
  if (typeof value !== "object" || value === null) return false
  const error = (value as { error?: unknown }).error
  return (
    Object.keys(value).length === 1 &&
    typeof error === "object" &&
    error !== null &&
    typeof (error as { type?: unknown }).type === "string" &&
    typeof (error as { message?: unknown }).message === "string"
  )
}

/** What every answer must be, whatever was asked: no 5xx, `nosniff`, and errors in the common body. */
const expectWellFormed = (response: Received, method: string, label: string) => {
  expect(response.status, label).toBeGreaterThanOrEqual(200)
  expect(response.status, label).toBeLessThan(500)
  expect(response.headers["x-content-type-options"], label).toBe("nosniff")
  if (response.status >= 400 && method !== "HEAD") {
    expect(isErrorBody(JSON.parse(response.body)), label).toBe(true)
  }
}

describe("fuzzing the reference server", () => {
  it(`answers ${REQUESTS} random requests without a 5xx or a stray row, and keeps working`, async () => {
    const statuses = new Map<number, number>()
    const created = new Set<string>()
    let sent = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(requestArbitrary, { minLength: CONCURRENCY, maxLength: CONCURRENCY }),
        async (batch) => {
          const responses = await Promise.all(batch.map((request) => send(request)))
          sent += batch.length
          responses.forEach((response, index) => {
            const request = batch[index]!
            statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
            const label = `${request.method} ${request.path.slice(0, 60)} ${JSON.stringify(request.headers).slice(0, 200)} (${request.body?.byteLength ?? "no"} bytes) → ${response.status} ${response.body.slice(0, 200)}`
            expectWellFormed(response, request.method, label)
            // Every target that resolves to the chat endpoint (`/api/v0.3/chat/../chat` too) answers with an id.
            if (response.status === 200 && request.method === "POST" && !request.path.startsWith("/health")) {
              const contentType = String(response.headers["content-type"])
              const first = contentType.startsWith("text/event-stream")
                ? JSON.parse(response.body.slice(6, response.body.indexOf("\n\n")))
                : JSON.parse(response.body)
              expect(first.conversation_id, label).toMatch(UUID_V4)
              created.add(first.conversation_id)
              if (contentType.startsWith("text/event-stream"))
                expect(response.body.endsWith("data: [DONE]\n\n")).toBe(true)
            }
          })
        }
      ),
      {
        numRuns: REQUESTS / CONCURRENCY,
        seed: Number(process.env.CONVOKE_FUZZ_SEED ?? 20261125),
        endOnFailure: true
      }
    )
    expect(sent).toBe(REQUESTS)
    console.info(
      `fuzz: ${sent} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}; ${created.size} conversations created`
    )

    // Every conversation and message in the database belongs to a request that succeeded.
    const conversations = await query<{ id: string }>(
      database.url,
      "SELECT id::text FROM convoke_conversations"
    )
    expect(new Set(conversations.map((row) => row.id))).toEqual(created)
    const strays = await query<{ count: string }>(
      database.url,
      "SELECT count(*)::text AS count FROM convoke_messages WHERE conversation_id::text <> ALL($1::text[])",
      [[...created]]
    )
    expect(strays[0]!.count).toBe("0")
    // Sanity: the fuzz reached both the happy path and the rejections.
    expect(created.size).toBeGreaterThan(100)
    expect([...statuses.keys()].filter((status) => status >= 400).length).toBeGreaterThan(4)

    // The server still answers correctly.
    expect(server.http.listening).toBe(true)
    const health = await fetch(`${server.url}/health`)
    expect(health.status).toBe(200)
    const stream = await chat(
      server,
      { message: "still alive?", stream: true },
      {
        headers: { authorization: `Bearer ${KEY}` }
      }
    )
    expect(stream.status).toBe(200)
    const payloads = await readAll(stream)
    expect(events(payloads)[0]!.type).toBe("metadata")
    expect(payloads.at(-1)).toBe("[DONE]")
  }, 120_000)

  it(`answers ${RAW_REQUESTS} malformed raw HTTP messages with a 4xx or a closed socket, never a 5xx`, async () => {
    const rawRequest = fc.oneof(
      fc.string({ unit: "binary", maxLength: 200 }).map((garbage) => `${garbage}\r\n\r\n`),
      fc
        .record({
          method: fc.string({ maxLength: 10 }),
          target: fc.string({ maxLength: 40 }),
          version: fc.string({ maxLength: 10 })
        })
        .map(({ method, target, version }) => `${method} ${target} ${version}\r\nHost: x\r\n\r\n`),
      fc
        .record({ name: fc.string({ maxLength: 20 }), value: fc.string({ unit: "binary", maxLength: 40 }) })
        .map(
          ({ name, value }) =>
            `POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\n${name}: ${value}\r\nContent-Length: 2\r\n\r\n{}`
        ),
      // WebSocket handshakes, with and without credentials, whole or broken: never a 5xx.
      fc
        .record({
          target: fc.constantFrom(
            "/api/v0.3/ws",
            "/api/v0.3/ws?ticket=",
            "/api/v0.3/ws?ticket=%ff",
            "/api/v0.3/chat"
          ),
          version: fc.oneof(fc.constant("13"), fc.string({ maxLength: 4 })),
          key: fc.oneof(fc.constant("dGhlIHNhbXBsZSBub25jZQ=="), fc.string({ maxLength: 30 })),
          credentials: fc.constantFrom(
            "",
            `Authorization: Bearer ${KEY}\r\n`,
            "Authorization: Bearer nope\r\n"
          ),
          origin: fc.constantFrom("", "Origin: https://evil.example\r\n", "Origin: %%%\r\n")
        })
        .map(
          ({ target, version, key, credentials, origin }) =>
            `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: ${version}\r\nSec-WebSocket-Key: ${key}\r\n${credentials}${origin}\r\n`
        ),
      fc.constantFrom(
        "POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}",
        "POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
        "GET / HTTP/9.9\r\n\r\n",
        `GET /${"a".repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        `POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 2000 }, (_, index) => `X-${index}: y`).join("\r\n")}\r\n\r\n`
      )
    )
    const exchange = (message: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(server.port, "127.0.0.1")
        let received = ""
        socket.setTimeout(5000, () => socket.destroy())
        socket.on("data", (chunk) => {
          received += chunk.toString("latin1")
        })
        socket.on("close", () => resolve(received))
        socket.on("error", () => {})
        socket.end(Buffer.from(message, "utf8"))
      })
    const failure = await fc.check(
      fc.asyncProperty(rawRequest, async (message) => {
        const answer = await exchange(message)
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1]
        if (status !== undefined) expect(Number(status), answer.slice(0, 200)).toBeLessThan(500)
      }),
      { numRuns: RAW_REQUESTS, seed: 20261125, endOnFailure: true }
    )
    if (failure.failed)
      throw new Error(`${String(failure.errorInstance).slice(0, 2000)}\nseed ${failure.seed}`)
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
  }, 120_000)

  it(`answers ${CONVERSATION_REQUESTS} random conversation, resume and stop requests without a 5xx or a stray row`, async () => {
    /** One streamed turn read to its end; one that does not end in time fails the setup, named. */
    const streamedTurn = async (key: string, body: Record<string, unknown>) => {
      const init = {
        headers: { authorization: `Bearer ${key}` },
        signal: AbortSignal.timeout(ANSWER_TIMEOUT_MILLIS)
      }
      try {
        return events(await readAll(await chat(server, { ...body, stream: true }, init)))[0]!
      } catch (error) {
        throw new Error(`setting up the fuzz: the turn ${JSON.stringify(body)} had no whole answer: ${error}`)
      }
    }
    /** Starts a conversation for a user (two turns, so resume has events to name) and returns its ids. */
    const converse = async (key: string, message: string) => {
      const first = await streamedTurn(key, { message })
      const second = await streamedTurn(key, {
        message: `${message} again`,
        conversation_id: first.conversation_id
      })
      return {
        id: first.conversation_id as string,
        turns: [first.turn_id as string, second.turn_id as string]
      }
    }
    const before = new Set(
      (await query<{ id: string }>(database.url, "SELECT id::text FROM convoke_conversations")).map(
        (row) => row.id
      )
    )
    const own = await Promise.all(Array.from({ length: 12 }, (_, index) => converse(KEY, `mine ${index}`)))
    const theirs = await Promise.all(
      Array.from({ length: 3 }, (_, index) => converse(VICTIM_KEY, `theirs ${index}`))
    )
    /** The other user's conversations as stored: they must come out of the fuzz unchanged. */
    const snapshot = () =>
      query<{ id: string; title: string; updated_at: string; messages: string }>(
        database.url,
        `SELECT c.id::text, c.title, c.updated_at::text,
                (SELECT string_agg(m.role || ':' || m.status || ':' || m.content, '|' ORDER BY m.seq)
                   FROM convoke_messages m WHERE m.conversation_id = c.id) AS messages
           FROM convoke_conversations c WHERE c.id::text = ANY($1::text[]) ORDER BY c.id`,
        [theirs.map((conversation) => conversation.id)]
      )
    const victimBefore = await snapshot()
    expect(victimBefore).toHaveLength(theirs.length)

    const turnIds = [...own, ...theirs].flatMap((conversation) => conversation.turns)
    const conversationId = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...own.map((conversation) => conversation.id)) },
      { weight: 3, arbitrary: fc.constantFrom(...theirs.map((conversation) => conversation.id)) },
      { weight: 1, arbitrary: fc.uuid() },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          "not-a-uuid",
          "00000000-0000-0000-0000-000000000000",
          "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF",
          "%00",
          "..",
          "%2e%2e",
          "'%20OR%201=1--",
          "a".repeat(300)
        )
      },
      { weight: 1, arbitrary: fc.webSegment() }
    )
    const lastEventId = fc.oneof(
      fc
        .tuple(
          fc.constantFrom(...turnIds),
          fc.oneof(fc.nat({ max: 40 }), fc.integer(), fc.constant(Number.MAX_SAFE_INTEGER))
        )
        .map(([turn, seq]) => `${turn}:${seq}`),
      fc.tuple(fc.uuid(), fc.nat()).map(([turn, seq]) => `${turn}:${seq}`),
      fc.constantFrom(...turnIds).map((turn) => `${turn}:`),
      fc.constantFrom(
        "",
        ":",
        ":1",
        "x:1",
        "1e3",
        "-1",
        `${turnIds[0]}:1.5`,
        `${turnIds[0]}:0x10`,
        `${turnIds[0]}:1:2`
      ),
      headerValue
    )
    const title = fc.oneof(
      weirdString,
      fc.constantFrom("renamed", " ", "a".repeat(200), "a".repeat(201), "\u0000x"),
      fc.jsonValue()
    )
    const patchBody = fc.oneof(
      {
        weight: 4,
        arbitrary: fc
          .record({ title, extra: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: [] })
          .map((value) => text(JSON.stringify(value)))
      },
      { weight: 1, arbitrary: fc.jsonValue().map((value) => text(JSON.stringify(value))) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) },
      { weight: 1, arbitrary: fc.constant(undefined) }
    )
    const query_ = fc.oneof(
      fc.constant(""),
      fc
        .record(
          {
            limit: fc.oneof(
              fc.integer({ min: -5, max: 200 }).map(String),
              headerValue,
              fc.constantFrom("1e1", "0x10", "2.5", "")
            ),
            cursor: fc.oneof(headerValue, fc.base64String({ maxLength: 80 }), fc.constant("WyIyMDI2IiwieCJd"))
          },
          { requiredKeys: [] }
        )
        .map((parameters) => `?${new URLSearchParams(parameters as Record<string, string>).toString()}`)
    )
    const conversationRequest: fc.Arbitrary<Sent> = fc
      .record({
        // Deletes are rarer, so the fuzzer's conversations last long enough for the other routes to meet them.
        kind: fc.constantFrom("list", "get", "rename", "delete", "resume", "stop", "other"),
        id: conversationId,
        // Deletes reach only some of the fuzzer's own conversations, so the others last for the other routes.
        deleteId: fc.oneof(
          {
            weight: 1,
            arbitrary: fc.constantFrom(...own.slice(0, 4).map((conversation) => conversation.id))
          },
          {
            weight: 3,
            arbitrary: conversationId.filter(
              (id) => !own.slice(4).some((conversation) => conversation.id === id)
            )
          }
        ),
        query: query_,
        lastEventId: fc.option(lastEventId, { nil: undefined }),
        inQuery: fc.boolean(),
        body: patchBody,
        contentType,
        credential,
        method
      })
      .map(({ kind, id, deleteId, query, lastEventId, inQuery, body, contentType, credential, method }) => {
        const headers: Record<string, string> = { ...credential }
        if (contentType !== undefined) headers["content-type"] = contentType
        const base = `/api/v0.3/conversations/${id}`
        const framed = (verb: string, path: string, payload: Uint8Array | undefined): Sent => {
          if (payload !== undefined && verb !== "GET" && verb !== "HEAD")
            headers["content-length"] = String(payload.byteLength)
          return {
            method: verb,
            path,
            headers,
            body: verb === "GET" || verb === "HEAD" ? undefined : payload
          }
        }
        switch (kind) {
          case "list":
            return framed("GET", `/api/v0.3/conversations${query}`, undefined)
          case "get":
            return framed("GET", `${base}${query}`, undefined)
          case "rename":
            return framed("PATCH", base, body)
          case "delete":
            return framed("DELETE", `/api/v0.3/conversations/${deleteId}`, body)
          case "resume":
            if (lastEventId !== undefined && inQuery) {
              return framed(
                "GET",
                `${base}/stream?last_event_id=${encodeURIComponent(lastEventId)}`,
                undefined
              )
            }
            if (lastEventId !== undefined) headers["last-event-id"] = lastEventId
            return framed("GET", `${base}/stream`, undefined)
          case "stop":
            return framed("POST", `${base}/stop`, body)
          default:
            // Any method but DELETE on any of the routes: 405 with Allow, or the route's own answer.
            return framed(
              method === "DELETE" ? "PUT" : method,
              [base, `${base}/stream`, `${base}/stop`, "/api/v0.3/conversations"][id.length % 4]!,
              body
            )
        }
      })

    // Chats on the fuzzer's own conversations run beside the fuzz, so stop and resume meet running turns.
    const chatting = fc.constantFrom(...own.map((conversation) => conversation.id)).map((id): Sent => {
      const payload = text(JSON.stringify({ message: "more", stream: true, conversation_id: id }))
      return {
        method: "POST",
        path: "/api/v0.3/chat",
        headers: {
          authorization: `Bearer ${KEY}`,
          "content-type": "application/json",
          "content-length": String(payload.byteLength)
        },
        body: payload
      }
    })
    const anyRequest = fc.oneof(
      { weight: 9, arbitrary: conversationRequest },
      { weight: 1, arbitrary: chatting }
    )

    const statuses = new Map<number, number>()
    const created = new Set<string>()
    const deleted = new Set<string>()
    let sent = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(anyRequest, { minLength: CONCURRENCY, maxLength: CONCURRENCY }),
        async (batch) => {
          const responses = await Promise.all(batch.map((request) => send(request)))
          sent += batch.length
          responses.forEach((response, index) => {
            const request = batch[index]!
            statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
            const label = `${request.method} ${request.path.slice(0, 120)} ${JSON.stringify(request.headers).slice(0, 200)} (${request.body?.byteLength ?? "no"} bytes) → ${response.status} ${response.body.slice(0, 200)}`
            expectWellFormed(response, request.method, label)
            if (response.status === 204 && request.method === "DELETE") {
              deleted.add(decodeURIComponent(request.path.split("/")[4]!).toLowerCase())
            }
            if (response.status === 200 && request.path === "/api/v0.3/chat") {
              created.add(JSON.parse(response.body.slice(6, response.body.indexOf("\n\n"))).conversation_id)
            }
          })
        }
      ),
      {
        numRuns: CONVERSATION_REQUESTS / CONCURRENCY,
        seed: Number(process.env.CONVOKE_FUZZ_SEED ?? 20261206),
        endOnFailure: true
      }
    )
    expect(sent).toBe(CONVERSATION_REQUESTS)
    console.info(
      `fuzz (conversations): ${sent} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}; ${deleted.size} deleted`
    )

    // The other user's conversations: not one renamed, deleted or written to.
    expect(await snapshot()).toEqual(victimBefore)
    expect([...deleted].filter((id) => theirs.some((conversation) => conversation.id === id))).toEqual([])
    // Every conversation is one that existed, or one a chat that succeeded created; the fuzzer's
    // own are gone exactly when a delete of them succeeded.
    const after = new Set(
      (await query<{ id: string }>(database.url, "SELECT id::text FROM convoke_conversations")).map(
        (row) => row.id
      )
    )
    const expected = new Set(
      [
        ...before,
        ...own.map((conversation) => conversation.id),
        ...theirs.map((conversation) => conversation.id),
        ...created
      ].filter((id) => !deleted.has(id))
    )
    expect(after).toEqual(expected)
    const strays = await query<{ count: string }>(
      database.url,
      "SELECT count(*)::text AS count FROM convoke_messages WHERE conversation_id::text <> ALL($1::text[])",
      [[...after]]
    )
    expect(strays[0]!.count).toBe("0")
    // Sanity: the fuzz reached the routes' successes and their rejections.
    for (const status of [200, 204, 400, 401, 404])
      expect(statuses.get(status) ?? 0, String(status)).toBeGreaterThan(0)

    expect(server.http.listening).toBe(true)
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
  }, 180_000)
})
