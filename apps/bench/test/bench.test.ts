/**
 * The benchmark's own parts, on a real PostgreSQL database: the baseline keeps
 * the wire contract it is compared on (metadata first, the conversation stored
 * before it, both messages after), and the load generator counts, times and
 * rejects what it should. No timing is asserted.
 */
import { PgMigrations } from "@convoke/store-pg"
import { makeTestDatabase, type TestDatabase } from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Baseline from "../src/Baseline.ts"
import * as EffectBaseline from "../src/EffectBaseline.ts"
import * as Load from "../src/Load.ts"

const query = <A extends object>(url: string, text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const sql = yield* PgClient.PgClient
      return (yield* sql.unsafe<A>(text, params as Array<any>)) as ReadonlyArray<A>
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
  )

let database: TestDatabase
type Served = Awaited<ReturnType<typeof Baseline.serve>>
let baseline: Served
let effectFloor: Served

beforeAll(async () => {
  database = await makeTestDatabase()
  await Effect.runPromise(
    PgMigrations.run.pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(database.url), maxConnections: 1 }))
    )
  )
  baseline = await Baseline.serve({ databaseUrl: database.url, echoDelayMs: 1 })
  effectFloor = await EffectBaseline.serve({ databaseUrl: database.url, echoDelayMs: 1 })
})

afterAll(async () => {
  await baseline?.close()
  await effectFloor?.close()
  await database?.drop()
})

// The Effect floor is the baseline's server on Effect: it must do the same job to be a fair floor.
describe.each([
  ["the baseline server", () => baseline],
  ["the Effect floor", () => effectFloor]
])("%s", (_, server) => {
  it("streams the metadata event first and stores the conversation before it, then both messages", async () => {
    const response = await fetch(`${server().url}${Load.CHAT_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ message: "hello there", stream: true })
    })
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
    const reader = response.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    const metadata = JSON.parse(first.replace(/^data: /, "").trim())
    expect(Object.keys(metadata)).toEqual(["type", "conversation_id", "model", "timestamp"])
    // The row exists as soon as the client holds the id.
    const stored = await query<{ id: string }>(
      database.url,
      "SELECT id FROM convoke_conversations WHERE id = $1",
      [metadata.conversation_id]
    )
    expect(stored).toHaveLength(1)
    let rest = ""
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      rest += new TextDecoder().decode(value)
    }
    expect(rest.endsWith("data: [DONE]\n\n")).toBe(true)
    expect(rest).toContain('"content":" hello"')
    const messages = await query<{ role: string; content: string; status: string }>(
      database.url,
      "SELECT role, content, status FROM convoke_messages WHERE conversation_id = $1 ORDER BY seq",
      [metadata.conversation_id]
    )
    expect(messages).toEqual([
      { role: "user", content: "hello there", status: "complete" },
      { role: "assistant", content: "Echo #1: hello there", status: "complete" }
    ])
  })

  it("answers bad input with the common error body", async () => {
    const response = await fetch(`${server().url}${Load.CHAT_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ message: "", stream: true })
    })
    expect(response.status).toBe(400)
    expect((await response.json()).error.type).toBe("invalid_request_error")
  })
})

describe("the load generator", () => {
  it("completes every request over keep-alive connections and times metadata before [DONE]", async () => {
    const result = await Load.run({
      url: baseline.url,
      concurrency: 4,
      requests: 40,
      message: "one two three"
    })
    expect(result.errors).toBe(0)
    expect(result.samples).toHaveLength(40)
    for (const sample of result.samples) expect(sample.ttfe).toBeLessThanOrEqual(sample.done)
    // Each request knows its place in the run, so the first wave can be told apart.
    expect(result.samples.map((sample) => sample.index).sort((a, b) => a! - b!)).toEqual(
      Array.from({ length: 40 }, (_, index) => index)
    )
  })

  it("counts a response that is not a stream as an error", async () => {
    const failing = await Load.stream({
      url: baseline.url,
      agent: new (await import("node:http")).Agent(),
      body: JSON.stringify({ message: "x" }),
      timeoutMs: 5_000
    })
    expect(failing.ok).toBe(false)
  })

  it("holds streams open until told to close them", async () => {
    let openWhileHeld = -1
    const slow = await Baseline.serve({ databaseUrl: database.url, echoDelayMs: 60_000 })
    try {
      const held = await Load.holdOpen({
        url: slow.url,
        count: 20,
        message: "a b c",
        whileOpen: async () => {
          const rows = await query<{ count: string }>(
            database.url,
            // Stored before each metadata event, so every one is there by now.
            "SELECT count(*) FROM convoke_conversations WHERE title = 'a b c'"
          )
          openWhileHeld = Number(rows[0]!.count)
        }
      })
      expect(held.errors).toBe(0)
      expect(held.opened).toBe(20)
      expect(openWhileHeld).toBe(20)
    } finally {
      await slow.close()
    }
  })

  it("takes percentiles by nearest rank", () => {
    const values = Array.from({ length: 100 }, (_, index) => index + 1)
    expect(Load.percentile(values, 50)).toBe(50)
    expect(Load.percentile(values, 99)).toBe(99)
    expect(Load.percentile(values, 100)).toBe(100)
    expect(Load.percentile([], 50)).toBeNaN()
  })
})
