/**
 * The v0.3 contract over real sockets, against the reference server with the
 * embedded PGlite store and with the real PostgreSQL server.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { chat, events, query, readAll, sleep, startServer, UUID_V4 } from "./helpers.ts"

const KEYS = {
  alice: "alice-key-0123456789abcdef",
  bob: "bob-key-0123456789abcdef00"
}
const as = (user: keyof typeof KEYS) => ({ headers: { authorization: `Bearer ${KEYS[user]}` } })

interface Target {
  readonly server: RunningServer
  /** Runs SQL against the server's database, when the test can reach it. */
  readonly sql?: <A extends object>(
    text: string,
    params?: ReadonlyArray<unknown>
  ) => Promise<ReadonlyArray<A>>
}

const contract = (name: string, setup: () => Promise<{ target: Target; teardown: () => Promise<void> }>) =>
  describe(name, () => {
    let target: Target
    let teardown: () => Promise<void>
    beforeAll(async () => {
      ;({ target, teardown } = await setup())
    })
    afterAll(async () => {
      await teardown?.()
    })

    const rowCounts = async () => {
      const [row] = await target.sql!<{ conversations: string; messages: string }>(
        "SELECT (SELECT count(*) FROM convoke_conversations) AS conversations, (SELECT count(*) FROM convoke_messages) AS messages"
      )
      return { conversations: Number(row!.conversations), messages: Number(row!.messages) }
    }

    it("sends the metadata event alone as the first chunk, then content, then [DONE]", async () => {
      const response = await chat(target.server, { message: "hello there", stream: true }, as("alice"))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
      expect(response.headers.get("cache-control")).toBe("no-cache, no-transform")
      expect(response.headers.get("x-accel-buffering")).toBe("no")
      const reader = response.body!.getReader()
      const decoder = new TextDecoder()
      const first = decoder.decode((await reader.read()).value)
      expect(first).toMatch(
        /^data: \{"type":"metadata","conversation_id":"[^"]+","model":"unified-chat","timestamp":\d+\}\n\n$/
      )
      const metadata = JSON.parse(first.slice(6))
      expect(metadata.conversation_id).toMatch(UUID_V4)
      expect(Number.isInteger(metadata.timestamp)).toBe(true)
      expect(Math.abs(metadata.timestamp - Date.now() / 1000)).toBeLessThan(60)
      let rest = ""
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        rest += decoder.decode(value, { stream: true })
      }
      const payloads = rest.split("\n\n").filter(Boolean)
      expect(payloads.at(-1)).toBe("data: [DONE]")
      const text = payloads
        .slice(0, -1)
        .map((payload) => JSON.parse(payload.slice(6)))
        .map((event) => {
          expect(event.type).toBe("content")
          return event.delta.content
        })
        .join("")
      expect(text).toBe("Echo #1: hello there")
    })

    it("gives every new conversation its own v4 UUID", async () => {
      const ids = await Promise.all(
        Array.from({ length: 5 }, async () => {
          const [metadata] = events(
            await readAll(await chat(target.server, { message: "hi", stream: true }, as("alice")))
          )
          return metadata!.conversation_id as string
        })
      )
      for (const id of ids) expect(id).toMatch(UUID_V4)
      expect(new Set(ids).size).toBe(5)
    })

    it("resumes a conversation by id, and the model sees its history", async () => {
      const [first] = events(
        await readAll(await chat(target.server, { message: "one", stream: true }, as("alice")))
      )
      const id = first!.conversation_id
      const second = events(
        await readAll(
          await chat(target.server, { message: "two", stream: true, conversation_id: id }, as("alice"))
        )
      )
      expect(second[0]!.conversation_id).toBe(id)
      expect(
        second
          .slice(1)
          .map((event) => event.delta.content)
          .join("")
      ).toBe("Echo #2: two")
      const third = await chat(target.server, { message: "three", conversation_id: id }, as("alice"))
      expect(third.status).toBe(200)
      const body = await third.json()
      expect(body).toMatchObject({
        conversation_id: id,
        model: "unified-chat",
        message: { role: "assistant", content: "Echo #3: three" }
      })
      expect(Number.isNaN(Date.parse(body.created_at))).toBe(false)
    })

    it.each([
      ["a malformed id", "not-a-uuid"],
      ["an unknown id", "3f0c8f7e-2a8b-4c1e-9d2a-6b8e5f4a1c3d"]
    ])(
      "starts a new conversation for %s when streaming, and answers 404 otherwise",
      async (_, conversationId) => {
        const [metadata] = events(
          await readAll(
            await chat(
              target.server,
              { message: "hi", stream: true, conversation_id: conversationId },
              as("alice")
            )
          )
        )
        expect(metadata!.conversation_id).toMatch(UUID_V4)
        expect(metadata!.conversation_id).not.toBe(conversationId)
        const response = await chat(
          target.server,
          { message: "hi", conversation_id: conversationId },
          as("alice")
        )
        expect(response.status).toBe(404)
        expect(await response.json()).toEqual({
          error: { type: "not_found", message: "Conversation not found" }
        })
      }
    )

    it("treats another user's conversation exactly like a missing one", async () => {
      const [mine] = events(
        await readAll(await chat(target.server, { message: "secret", stream: true }, as("alice")))
      )
      const id = mine!.conversation_id
      const [theirs] = events(
        await readAll(
          await chat(target.server, { message: "peek", stream: true, conversation_id: id }, as("bob"))
        )
      )
      expect(theirs!.conversation_id).not.toBe(id)
      const other = await chat(target.server, { message: "peek", conversation_id: id }, as("bob"))
      const missing = await chat(
        target.server,
        { message: "peek", conversation_id: crypto.randomUUID() },
        as("bob")
      )
      expect(other.status).toBe(missing.status)
      expect(await other.text()).toBe(await missing.text())
      // Alice's conversation is untouched by Bob's attempts.
      const again = await chat(target.server, { message: "still mine", conversation_id: id }, as("alice"))
      expect((await again.json()).message.content).toBe("Echo #2: still mine")
    })

    it("accepts a JSON body sent as text/plain, or with no content type (the release notes' browser snippet)", async () => {
      const plain = await chat(target.server, JSON.stringify({ message: "plain", stream: true }), {
        headers: { "content-type": "text/plain;charset=UTF-8", ...as("alice").headers }
      })
      expect(plain.status).toBe(200)
      expect(events(await readAll(plain))[0]!.type).toBe("metadata")
      const none = await fetch(`${target.server.url}/api/v0.3/chat`, {
        method: "POST",
        headers: { Accept: "text/event-stream", ...as("alice").headers },
        body: new Blob([JSON.stringify({ message: "no type", stream: true })])
      })
      expect(none.status).toBe(200)
      const reader = none.body!.getReader()
      const { value } = await reader.read()
      const firstEvent = JSON.parse(
        new TextDecoder()
          .decode(value)
          .replace(/^data: /, "")
          .trim()
      )
      expect(firstEvent.type).toBe("metadata")
      // Read to the end rather than cancel: a cancelled stream stores its partial
      // reply after the cancel returns, which would race the next test's row counts.
      while (!(await reader.read()).done) {}
    })

    it("rejects malformed requests with a 4xx and the common error body, writing nothing", async () => {
      const before = target.sql ? await rowCounts() : undefined
      const cases: Array<[unknown, number, string, Record<string, string>?]> = [
        ["{not json", 400, "invalid_request"],
        ["[1,2]", 400, "invalid_request"],
        [{}, 400, "invalid_request"],
        [{ message: "" }, 400, "invalid_request"],
        [{ message: 42 }, 400, "invalid_request"],
        [{ message: "hi", stream: "yes" }, 400, "invalid_request"],
        [{ message: "hi", conversation_id: 7 }, 400, "invalid_request"],
        [{ message: "x".repeat(40_000) }, 413, "request_too_large"],
        [
          { message: "hi" },
          415,
          "unsupported_media_type",
          { "content-type": "application/x-www-form-urlencoded" }
        ]
      ]
      for (const [body, status, type, headers] of cases) {
        const response = await chat(target.server, body, { headers: { ...as("alice").headers, ...headers } })
        expect(response.status, JSON.stringify(body).slice(0, 40)).toBe(status)
        const error = await response.json()
        expect(error).toEqual({ error: { type, message: expect.any(String) } })
      }
      const unauthenticated = await chat(target.server, { message: "hi", stream: true })
      expect(unauthenticated.status).toBe(401)
      expect((await unauthenticated.json()).error.type).toBe("unauthenticated")
      if (before) expect(await rowCounts()).toEqual(before)
    })

    it("stays healthy when a client leaves after the metadata event, and stores the partial reply", async () => {
      const controller = new AbortController()
      const response = await chat(
        target.server,
        { message: Array.from({ length: 200 }, (_, index) => `word${index}`).join(" "), stream: true },
        { ...as("alice"), signal: controller.signal }
      )
      const reader = response.body!.getReader()
      const metadata = JSON.parse(new TextDecoder().decode((await reader.read()).value).slice(6))
      await reader.read()
      controller.abort()
      const health = await fetch(`${target.server.url}/health`)
      expect(health.status).toBe(200)
      if (target.sql) {
        let rows: ReadonlyArray<{ status: string; content: string }> = []
        for (let attempt = 0; attempt < 100 && rows.length === 0; attempt++) {
          await sleep(20)
          rows = await target.sql<{ status: string; content: string }>(
            "SELECT status, content FROM convoke_messages WHERE conversation_id = $1 AND role = 'assistant'",
            [metadata.conversation_id]
          )
        }
        expect(rows).toHaveLength(1)
        expect(rows[0]!.status).toBe("partial")
        expect(rows[0]!.content.startsWith("Echo #1:")).toBe(true)
        expect(rows[0]!.content.length).toBeLessThan(200 * 6)
      }
    })
  })

const apiKeys = [
  { key: KEYS.alice, userId: "alice" },
  { key: KEYS.bob, userId: "bob" }
]

contract("reference server on embedded PGlite", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-server-"))
  const server = await startServer({ dataDir, apiKeys })
  return {
    target: { server },
    teardown: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
})

contract("reference server on PostgreSQL", async () => {
  const database = await makeTestDatabase()
  const server = await startServer({ databaseUrl: database.url, apiKeys })
  return {
    target: { server, sql: (text, params) => query(database.url, text, params) },
    teardown: async () => {
      await server.close()
      await database.drop()
    }
  }
})
