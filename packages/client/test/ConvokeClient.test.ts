/**
 * The client against the reference server (embedded PostgreSQL, echo model)
 * and a test server built from the core, over real loopback sockets.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  ConversationStorage,
  ConvokeAbortError,
  ConvokeClient,
  ConvokeHttpError,
  ConvokeNetworkError,
  ConvokeStreamError
} from "../src/index.ts"
import { readInOrder } from "./replies.ts"
import { startReferenceServer, startTestServer } from "./servers.ts"

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const ALICE = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz"
const BOB = "bob-key-0123456789abcdef00-ghijklmnopqrstuvwxyz"
const fast = { retries: 3, baseDelayMs: 1, maxDelayMs: 50 }

describe("against the reference server", () => {
  let server: Awaited<ReturnType<typeof startReferenceServer>>
  let client: ConvokeClient
  beforeAll(async () => {
    server = await startReferenceServer()
    client = new ConvokeClient({ baseUrl: server.url })
  })
  afterAll(async () => {
    await server?.close()
  })

  it("resolves the conversation id before the first delta, then streams the whole reply", async () => {
    const reply = client.chat({ message: "hello there" })
    const { order, deltas } = await readInOrder(reply)
    expect(order).toEqual(["id", "first delta"])
    const id = await reply.conversationId
    expect(id).toMatch(UUID_V4)
    expect(await reply.temporary).toBe(false)
    expect((await reply.metadata).model).toBe("unified-chat")
    expect(await reply.text).toBe("Echo #1: hello there")
    expect(deltas.join("")).toBe("Echo #1: hello there")
    expect(deltas.length).toBeGreaterThan(1)
  })

  it("lets a late iteration see every delta, and text works without iterating", async () => {
    const reply = client.chat({ message: "one two three" })
    const text = await reply.text
    const replayed: Array<string> = []
    for await (const delta of reply) replayed.push(delta)
    expect(replayed.join("")).toBe(text)
    expect(text).toBe("Echo #1: one two three")
  })

  it("resumes a conversation by id: same id, and the model sees the history", async () => {
    const first = client.chat({ message: "first" })
    const id = await first.conversationId
    await first.text
    const second = client.chat({ message: "second", conversationId: id })
    expect(await second.conversationId).toBe(id)
    expect(await second.text).toBe("Echo #2: second")
  })

  it("starts a new conversation for an unknown id, and the caller can tell", async () => {
    const unknown = "00000000-0000-4000-8000-000000000000"
    const reply = client.chat({ message: "hi", conversationId: unknown })
    expect(await reply.conversationId).not.toBe(unknown)
    expect(await reply.text).toBe("Echo #1: hi")
  })

  it("aborts mid-stream: promises and iteration reject with AbortError", async () => {
    const words = Array.from({ length: 400 }, (_, index) => `w${index}`).join(" ")
    const reply = client.chat({ message: words })
    const id = await reply.conversationId
    const received: Array<string> = []
    let caught: unknown
    try {
      for await (const delta of reply) {
        received.push(delta)
        if (received.length === 3) reply.abort()
      }
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(ConvokeAbortError)
    expect((caught as ConvokeAbortError).name).toBe("AbortError")
    expect((caught as ConvokeAbortError).conversationId).toBe(id)
    expect((caught as ConvokeAbortError).partialText).toBe(received.join(""))
    await expect(reply.text).rejects.toBeInstanceOf(ConvokeAbortError)
    expect(received.join("").length).toBeLessThan(`Echo #1: ${words}`.length)
  })

  it("aborts through a signal before anything is sent", async () => {
    const controller = new AbortController()
    controller.abort()
    const reply = client.chat({ message: "never", signal: controller.signal })
    await expect(reply.conversationId).rejects.toMatchObject({ name: "AbortError" })
    await expect(reply.text).rejects.toBeInstanceOf(ConvokeAbortError)
  })

  it("remembers the current conversation per key, and forgets it on request", async () => {
    const remembering = new ConvokeClient({ baseUrl: server.url, storage: ConversationStorage.memory() })
    const reply = remembering.chat({ message: "a" })
    const first = await reply.conversationId
    await reply.text
    expect(await remembering.currentConversationId()).toBe(first)
    const second = remembering.chat({ message: "b" })
    expect(await second.conversationId).toBe(first)
    expect(await second.text).toBe("Echo #2: b")
    const other = await remembering.chat({ message: "c", key: "other" }).conversationId
    expect(other).not.toBe(first)
    await remembering.forgetConversation()
    const fresh = await remembering.chat({ message: "d" }).conversationId
    expect(fresh).not.toBe(first)
    expect(await remembering.currentConversationId("other")).toBe(other)
  })

  it("lists, reads, renames and deletes conversations through the server's conversation API", async () => {
    const reply = client.chat({ message: "a conversation to manage" })
    const id = await reply.conversationId
    await reply.text
    const page = await client.conversations.list({ limit: 1 })
    expect(page.data[0]).toMatchObject({ id, title: "a conversation to manage" })
    const conversation = await client.conversations.get(id)
    expect(conversation.messages.map((message) => [message.role, message.content, message.status])).toEqual([
      ["user", "a conversation to manage", "complete"],
      ["assistant", "Echo #1: a conversation to manage", "complete"]
    ])
    expect(Date.parse(conversation.createdAt)).not.toBeNaN()
    expect(await client.conversations.rename(id, "Renamed")).toMatchObject({ id, title: "Renamed" })
    expect((await client.conversations.get(id)).title).toBe("Renamed")
    await client.conversations.delete(id)
    const error = await client.conversations.get(id).catch((caught: unknown) => caught)
    expect(error).toMatchObject({ name: "ConvokeHttpError", status: 404, type: "not_found" })
  })

  it("rejects with ConvokeHttpError and the common body for a bad request, without retrying", async () => {
    const reply = client.chat({ message: "" })
    const error = await reply.conversationId.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ConvokeHttpError)
    expect(error).toMatchObject({ status: 400, type: "invalid_request" })
    expect((error as ConvokeHttpError).body).toMatchObject({ error: { type: "invalid_request" } })
    await expect(reply.text).rejects.toBe(error)
  })
})

describe("against a test server (errors, retries, auth, conversation API)", () => {
  let server: Awaited<ReturnType<typeof startTestServer>>
  const chats = () => server.seen.filter((request) => request.url === "/api/v0.3/chat").length
  beforeAll(async () => {
    server = await startTestServer()
  })
  afterAll(async () => {
    await server?.close()
  })

  it("sends the API key as a Bearer token and rejects 401 without one", async () => {
    const authorized = new ConvokeClient({ baseUrl: server.url, apiKey: () => ALICE })
    expect(await authorized.chat({ message: "hi" }).text).toBe("Echo #1: hi")
    expect(server.seen.at(-1)?.authorization).toBe(`Bearer ${ALICE}`)
    const before = chats()
    const anonymous = new ConvokeClient({ baseUrl: server.url, retry: fast })
    const error = await anonymous.chat({ message: "hi" }).text.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ConvokeHttpError)
    expect(error).toMatchObject({ status: 401, type: "unauthenticated" })
    expect(chats() - before).toBe(1)
  })

  it("turns an error event into ConvokeStreamError after the id and the partial text, never retried", async () => {
    const client = new ConvokeClient({ baseUrl: server.url, apiKey: ALICE, retry: fast })
    const before = chats()
    const reply = client.chat({ message: "fail please" })
    const id = await reply.conversationId
    const deltas: Array<string> = []
    const error = await (async () => {
      for await (const delta of reply) deltas.push(delta)
    })().catch((caught: unknown) => caught)
    expect(deltas).toEqual(["Partial", " reply"])
    expect(error).toBeInstanceOf(ConvokeStreamError)
    expect(error).toMatchObject({
      type: "overloaded_error",
      message: "The model is overloaded",
      conversationId: id,
      partialText: "Partial reply"
    })
    await expect(reply.text).rejects.toBe(error)
    expect(chats() - before).toBe(1)
  })

  it("abort closes the connection: the server ends the turn as client_closed, keeps it, and resuming continues", async () => {
    const client = new ConvokeClient({ baseUrl: server.url, apiKey: ALICE })
    const words = Array.from({ length: 400 }, (_, index) => `w${index}`).join(" ")
    const reply = client.chat({ message: words })
    const id = await reply.conversationId
    let count = 0
    await (async () => {
      for await (const _delta of reply) if (++count === 3) reply.abort()
    })().catch(() => {})
    expect(await server.turnEnded(id)).toBe("client_closed")
    expect(await client.chat({ message: "after abort", conversationId: id }).text).toBe(
      "Echo #2: after abort"
    )
  })

  it("retries 503, 429 (honouring Retry-After) and a dropped connection before the first event", async () => {
    const client = new ConvokeClient({ baseUrl: server.url, apiKey: ALICE, retry: fast })
    const before = chats()
    server.fail("503", "429", "drop")
    const reply = client.chat({ message: "eventually" })
    expect(await reply.text).toBe("Echo #1: eventually")
    expect(chats() - before).toBe(4)
  })

  it("gives up after the configured retries with the last error", async () => {
    const client = new ConvokeClient({ baseUrl: server.url, apiKey: ALICE, retry: { ...fast, retries: 1 } })
    const before = chats()
    server.fail("503", "503")
    const error = await client.chat({ message: "x" }).conversationId.catch((caught: unknown) => caught)
    expect(error).toMatchObject({
      name: "ConvokeHttpError",
      status: 503,
      type: "unavailable",
      retryAfterSeconds: 0
    })
    expect(chats() - before).toBe(2)
    server.fail("drop")
    const dropped = await new ConvokeClient({ baseUrl: server.url, apiKey: ALICE, retry: false })
      .chat({ message: "x" })
      .text.catch((caught: unknown) => caught)
    expect(dropped).toBeInstanceOf(ConvokeNetworkError)
    const remaining = await new ConvokeClient({ baseUrl: server.url, apiKey: ALICE, retry: fast }).chat({
      message: "drain"
    }).text
    expect(remaining).toBe("Echo #1: drain")
  })

  it("reports an unreachable server as ConvokeNetworkError", async () => {
    const client = new ConvokeClient({ baseUrl: "http://127.0.0.1:1", retry: { ...fast, retries: 1 } })
    const error = await client.chat({ message: "x" }).conversationId.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ConvokeNetworkError)
  })

  describe("conversation API", () => {
    const alice = () => new ConvokeClient({ baseUrl: server.url, apiKey: ALICE, retry: fast })
    const bob = () => new ConvokeClient({ baseUrl: server.url, apiKey: BOB, retry: fast })
    const created: Array<string> = []
    let bobs: string

    beforeAll(async () => {
      for (const message of ["first topic", "second topic", "third topic"]) {
        const reply = alice().chat({ message })
        created.push(await reply.conversationId)
        await reply.text
      }
      const reply = bob().chat({ message: "bob's topic" })
      bobs = await reply.conversationId
      await reply.text
    })

    it("lists the caller's conversations newest first, page by page", async () => {
      const newest = [...created].reverse()
      const first = await alice().conversations.list({ limit: 2 })
      expect(first.data.map((conversation) => conversation.id)).toEqual(newest.slice(0, 2))
      expect(first.data[0]).toMatchObject({ id: newest[0], title: "third topic" })
      expect(Date.parse(first.data[0]!.createdAt)).not.toBeNaN()
      expect(first.nextCursor).not.toBeNull()
      const all: Array<string> = []
      for await (const conversation of alice().conversations.all({ limit: 2 })) all.push(conversation.id)
      expect(all.filter((id) => created.includes(id))).toEqual(newest)
      expect(all).not.toContain(bobs)
    })

    it("reads one with its messages, renames and deletes it", async () => {
      const id = created[0]!
      const conversation = await alice().conversations.get(id)
      expect(conversation.messages.map((message) => [message.role, message.content, message.status])).toEqual(
        [
          ["user", "first topic", "complete"],
          ["assistant", "Echo #1: first topic", "complete"]
        ]
      )
      const renamed = await alice().conversations.rename(id, "Renamed")
      expect(renamed).toMatchObject({ id, title: "Renamed" })
      expect((await alice().conversations.list({ limit: 1 })).data[0]?.id).toBe(id)
      await alice().conversations.delete(id)
      const error = await alice()
        .conversations.get(id)
        .catch((caught: unknown) => caught)
      expect(error).toMatchObject({ name: "ConvokeHttpError", status: 404, type: "not_found" })
    })

    it("cannot tell another user's conversation from a missing one", async () => {
      const other = await alice()
        .conversations.get(bobs)
        .catch((caught: unknown) => caught)
      const missing = await alice()
        .conversations.get("00000000-0000-4000-8000-000000000000")
        .catch((caught: unknown) => caught)
      expect(other).toBeInstanceOf(ConvokeHttpError)
      expect((other as ConvokeHttpError).status).toBe(404)
      expect((other as ConvokeHttpError).body).toEqual((missing as ConvokeHttpError).body)
      await expect(alice().conversations.rename(bobs, "mine now")).rejects.toMatchObject({ status: 404 })
      await expect(alice().conversations.delete(bobs)).rejects.toMatchObject({ status: 404 })
      expect((await bob().conversations.get(bobs)).title).toBe("bob's topic")
    })
  })
})
