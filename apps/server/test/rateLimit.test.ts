/**
 * Rate limits over real sockets: one reference server with in-memory
 * counters, then two servers sharing Redis (127.0.0.1:6379) that hold one
 * budget between them. Every 429 is checked to have written no row in the
 * real PostgreSQL database the servers share. The core's
 * `ChatRateLimit.layerRedisConfig` reads the same variables into the same
 * Redis counters.
 */
import { randomUUID } from "node:crypto"
import { ChatHttp, ChatRateLimit, ConversationStore, EchoLanguageModel, Identity } from "@convoke/core"
import { deleteKeys, keysMatching, requireService } from "@convoke/core/testing"
import { makeTestDatabase, type TestDatabase } from "@convoke/store-pg/testing"
import { NodeRedis } from "@effect/platform-node"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { chat, isRedisReachable, query, sleep, startServer } from "./helpers.ts"

const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"
// Skipped on a machine without Redis; under CI its absence fails the run.
const redisReachable = requireService(
  it,
  `Redis at ${new URL(REDIS_URL).host}`,
  await isRedisReachable(REDIS_URL)
)
const KEYS = {
  alice: "alice-rate-key-0123456789abcdefghijklmnopqrstuvwxyz",
  bob: "bob-rate-key-0123456789abcdefghijklmnopqrstuvwxyz"
}
const as = (user: keyof typeof KEYS) => ({ headers: { authorization: `Bearer ${KEYS[user]}` } })
const apiKeys = [
  { key: KEYS.alice, userId: "alice" },
  { key: KEYS.bob, userId: "bob" }
]

let database: TestDatabase
const servers: Array<RunningServer> = []

beforeAll(async () => {
  database = await makeTestDatabase()
})
afterAll(async () => {
  for (const server of servers.splice(0)) await server.close()
  await database?.drop()
})

const rows = async () => {
  const [row] = await query<{ conversations: string; messages: string }>(
    database.url,
    "SELECT (SELECT count(*) FROM convoke_conversations)::text AS conversations, (SELECT count(*) FROM convoke_messages)::text AS messages"
  )
  return row
}

/** A server with only the given limits on (the rest 0, that is off). */
const start = async (
  limits: {
    readonly userRequests?: number
    readonly addressRequests?: number
    readonly authFailures?: number
    readonly windowSeconds?: number
    readonly concurrent?: number
    readonly prefix?: string
  },
  overrides: Parameters<typeof startServer>[0] = {}
) => {
  const window = Duration.seconds(limits.windowSeconds ?? 60)
  const server = await startServer({
    databaseUrl: database.url,
    apiKeys,
    rateLimit: {
      user: { limit: limits.userRequests ?? 0, window },
      address: { limit: limits.addressRequests ?? 0, window },
      failures: { limit: limits.authFailures ?? 0, window },
      concurrent: limits.concurrent ?? 0,
      prefix: limits.prefix ?? "convoke:ratelimit:"
    },
    ...overrides
  })
  servers.push(server)
  return server
}

const drain = async (response: Response) => {
  await response.arrayBuffer()
  return response
}

describe("one instance, in memory", () => {
  it("allows the budget, then answers 429 with Retry-After and RateLimit-* and writes nothing; the budget resets", async () => {
    // A short window: the test waits it out below.
    const server = await start({ userRequests: 3, windowSeconds: 2 })
    for (let index = 0; index < 3; index++) {
      const response = await drain(await chat(server, { message: `hi ${index}` }, as("alice")))
      expect(response.status).toBe(200)
      expect(response.headers.get("ratelimit-limit")).toBe("3")
      expect(response.headers.get("ratelimit-remaining")).toBe(String(2 - index))
    }
    const before = await rows()
    const limited = await chat(server, { message: "too many", stream: true }, as("alice"))
    expect(limited.status).toBe(429)
    expect(await limited.json()).toEqual({ error: { type: "rate_limited", message: expect.any(String) } })
    const retryAfter = Number(limited.headers.get("retry-after"))
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(2)
    expect(limited.headers.get("ratelimit-limit")).toBe("3")
    expect(limited.headers.get("ratelimit-remaining")).toBe("0")
    expect(await rows()).toEqual(before)
    // Bob has a budget of his own.
    expect((await drain(await chat(server, { message: "bob" }, as("bob")))).status).toBe(200)

    // After Retry-After the window has passed and Alice may chat again.
    await sleep(retryAfter * 1000 + 100)
    expect((await drain(await chat(server, { message: "again" }, as("alice")))).status).toBe(200)
  })

  it("throttles failed authentications per address, on every route, before credentials are checked", async () => {
    const server = await start({ authFailures: 2 })
    expect((await drain(await chat(server, { message: "hi" }))).status).toBe(401)
    const list = await fetch(`${server.url}/api/v0.3/conversations`, { headers: { "x-api-key": "guess" } })
    expect((await drain(list)).status).toBe(401)
    const limited = await chat(server, { message: "hi" }, { headers: { "x-api-key": "guess-again" } })
    expect(limited.status).toBe(429)
    expect(limited.headers.get("retry-after")).not.toBeNull()
    await limited.arrayBuffer()
    // The address is refused before its credentials are checked: a right guess learns nothing.
    expect((await drain(await chat(server, { message: "hi" }, as("alice")))).status).toBe(429)
  })

  it("limits open streams per user and releases the slot when the client disconnects", async () => {
    const server = await start({ concurrent: 1 }, { echoDelayMs: 50 })
    const controller = new AbortController()
    const long = Array.from({ length: 200 }, (_, index) => `word${index}`).join(" ")
    const open = await chat(
      server,
      { message: long, stream: true },
      { ...as("alice"), signal: controller.signal }
    )
    expect(open.status).toBe(200)
    const reader = open.body!.getReader()
    await reader.read()
    const before = await rows()
    const second = await chat(server, { message: "second", stream: true }, as("alice"))
    expect(second.status).toBe(429)
    expect((await second.json()).error.type).toBe("rate_limited")
    expect((await rows())!.conversations).toBe(before!.conversations)
    controller.abort()
    let status = 429
    for (let attempt = 0; attempt < 200 && status === 429; attempt++) {
      status = (await drain(await chat(server, { message: "after", stream: true }, as("alice")))).status
      if (status === 429) await sleep(20)
    }
    expect(status).toBe(200)
  })
})

describe.skipIf(!redisReachable)("two instances sharing Redis", () => {
  const prefix = `convoke:test:${randomUUID()}:`

  afterAll(async () => {
    // Remove this run's counters (they would expire on their own).
    await Effect.runPromise(deleteKeys(prefix).pipe(Effect.provide(NodeRedis.layer({ url: REDIS_URL }))))
  })

  it("hold one request budget and one stream limit between them", async () => {
    const settings = { redisUrl: REDIS_URL, echoDelayMs: 50 }
    const first = await start({ userRequests: 4, concurrent: 1, prefix }, settings)
    const second = await start({ userRequests: 4, concurrent: 1, prefix }, settings)
    expect(first.summary.find(([label]) => label === "rate limits")?.[1]).toContain("Redis")

    // Alternate between the instances: four requests in all are allowed.
    for (const server of [first, second, first, second]) {
      expect((await drain(await chat(server, { message: "hi" }, as("bob")))).status).toBe(200)
    }
    const before = await rows()
    for (const server of [first, second]) {
      const limited = await chat(server, { message: "one more", stream: true }, as("bob"))
      expect(limited.status).toBe(429)
      expect(limited.headers.get("ratelimit-limit")).toBe("4")
      await limited.arrayBuffer()
    }
    expect(await rows()).toEqual(before)

    // A stream open on one instance holds the user's only slot on the other.
    const controller = new AbortController()
    const long = Array.from({ length: 200 }, (_, index) => `word${index}`).join(" ")
    const open = await chat(
      first,
      { message: long, stream: true },
      { ...as("alice"), signal: controller.signal }
    )
    expect(open.status).toBe(200)
    const reader = open.body!.getReader()
    await reader.read()
    const blocked = await chat(second, { message: "second", stream: true }, as("alice"))
    expect(blocked.status).toBe(429)
    await blocked.arrayBuffer()
    controller.abort()
    let status = 429
    for (let attempt = 0; attempt < 200 && status === 429; attempt++) {
      status = (await drain(await chat(second, { message: "after", stream: true }, as("alice")))).status
      if (status === 429) await sleep(20)
    }
    expect(status).toBe(200)
  })

  it("hold one budget of failed authentications between them", async () => {
    const settings = { redisUrl: REDIS_URL }
    const first = await start({ authFailures: 2, prefix: `${prefix}failures:` }, settings)
    const second = await start({ authFailures: 2, prefix: `${prefix}failures:` }, settings)
    const guess = (server: RunningServer) =>
      chat(server, { message: "hi" }, { headers: { "x-api-key": `guess-${randomUUID()}` } }).then(drain)
    expect((await guess(first)).status).toBe(401)
    expect((await guess(second)).status).toBe(401)
    expect((await guess(first)).status).toBe(429)
    expect((await guess(second)).status).toBe(429)
  })

  it("are what ChatRateLimit.layerRedisConfig builds from the same variables", async () => {
    const env = {
      CONVOKE_RATE_LIMIT_REQUESTS: "2",
      CONVOKE_RATE_LIMIT_CONCURRENT: "0",
      CONVOKE_REDIS_PREFIX: `${prefix}config:`
    }
    const rateLimit = ChatRateLimit.layerRedisConfig().pipe(
      Layer.provide(NodeRedis.layer({ url: REDIS_URL })),
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))
    )
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        ConversationStore.layerMemory,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerApiKeys(apiKeys),
        rateLimit
      )
    )
    try {
      const post = () =>
        app.handler(
          new Request(`http://localhost${ChatHttp.CHAT_PATH}`, {
            method: "POST",
            headers: { "content-type": "application/json", ...as("alice").headers },
            body: JSON.stringify({ message: "hi" })
          })
        )
      expect((await drain(await post())).status).toBe(200)
      expect((await drain(await post())).status).toBe(200)
      expect((await drain(await post())).status).toBe(429)
      const keys = await Effect.runPromise(
        keysMatching(`${prefix}config:*`).pipe(Effect.provide(NodeRedis.layer({ url: REDIS_URL })))
      )
      expect(keys.length).toBeGreaterThan(0)
    } finally {
      await app.dispose()
    }
  })
})
