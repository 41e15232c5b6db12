/**
 * `@convoke/client/ai-sdk` against real servers over loopback: the chunks it
 * makes from the reference server's SSE bytes (recorded by a wrapping
 * `fetch`), and read back by the AI SDK's own `readUIMessageStream`; the
 * conversation id remembered per chat id across transports (a reload);
 * `reconnectToStream` replaying a running turn, and answering `null` when
 * there is nothing to resume; `stop()` (an abort) ending the turn as
 * `cancelled`; and a model failure becoming an `error` chunk.
 */
import { readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ConvokeChatTransport, type ConvokeUIMessage } from "../src/ai-sdk.ts"
import { ConversationStorage, ConvokeClient } from "../src/index.ts"
import { startReferenceServer, startTestServer } from "./servers.ts"

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const ALICE = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz"

const userMessage = (text: string, id = "user-1"): UIMessage => ({
  id,
  role: "user",
  parts: [{ type: "text", text }]
})

const send = (
  transport: ConvokeChatTransport,
  chatId: string,
  text: string,
  abortSignal?: AbortSignal
): Promise<ReadableStream<UIMessageChunk>> =>
  transport.sendMessages({
    trigger: "submit-message",
    chatId,
    messageId: undefined,
    messages: [userMessage(text)],
    abortSignal
  })

const collect = async <A>(stream: ReadableStream<A>): Promise<Array<A>> => {
  const items: Array<A> = []
  for await (const item of stream) items.push(item)
  return items
}

const textOf = (chunks: ReadonlyArray<UIMessageChunk>) =>
  chunks.flatMap((chunk) => (chunk.type === "text-delta" ? [chunk.delta] : [])).join("")

/** A storage over a `Map`, standing in for `localStorage` across "reloads" (new clients, same storage). */
const sharedStorage = () => {
  const items = new Map<string, string>()
  return ConversationStorage.localStorage({
    storage: {
      getItem: (key) => items.get(key) ?? null,
      setItem: (key, value) => {
        items.set(key, value)
      },
      removeItem: (key) => {
        items.delete(key)
      }
    }
  })
}

/** A `fetch` that keeps a copy of every streamed response body, as text. */
const recordingFetch = () => {
  const bodies: Array<Promise<string>> = []
  const wrapped: typeof fetch = async (input, init) => {
    const response = await fetch(input, init)
    if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream") || !response.body) {
      return response
    }
    const [mine, theirs] = response.body.tee()
    bodies.push(new Response(mine).text())
    return new Response(theirs, { status: response.status, headers: response.headers })
  }
  return { fetch: wrapped, bodies }
}

/** The `data:` payloads of an SSE body, in order. */
const dataOf = (body: string): Array<string> =>
  body
    .split(/\r?\n\r?\n/)
    .flatMap((event) => event.split(/\r?\n/).filter((line) => line.startsWith("data:")))
    .map((line) => line.slice("data:".length).trim())

describe("against the reference server", () => {
  let server: Awaited<ReturnType<typeof startReferenceServer>>
  beforeAll(async () => {
    server = await startReferenceServer()
  })
  afterAll(async () => {
    await server?.close()
  })

  it("maps each event of the stream to a chunk: start with the metadata, text, finish", async () => {
    const recorder = recordingFetch()
    const transport = new ConvokeChatTransport({
      client: new ConvokeClient({ baseUrl: server.url, fetch: recorder.fetch })
    })
    const chunks = await collect(await send(transport, "chat-a", "hello there, useChat"))
    const events = dataOf(await recorder.bodies[0]!)
    expect(events.at(-1)).toBe("[DONE]")
    const wire = events.slice(0, -1).map((data) => JSON.parse(data))
    const metadata = wire[0]
    expect(metadata).toMatchObject({ type: "metadata", model: "unified-chat" })
    expect(metadata.conversation_id).toMatch(UUID_V4)
    expect(metadata.turn_id).toMatch(UUID_V4)
    const textId = `text-${metadata.turn_id}`
    expect(chunks).toEqual([
      {
        type: "start",
        messageId: metadata.turn_id,
        messageMetadata: {
          conversationId: metadata.conversation_id,
          model: "unified-chat",
          turnId: metadata.turn_id
        }
      },
      { type: "text-start", id: textId },
      ...wire.slice(1).map((event) => ({ type: "text-delta", id: textId, delta: event.delta.content })),
      { type: "text-end", id: textId },
      { type: "finish", finishReason: "stop" }
    ])
    expect(textOf(chunks)).toBe("Echo #1: hello there, useChat")
  })

  it("builds the assistant message the AI SDK expects, with the metadata of the first event", async () => {
    const transport = new ConvokeChatTransport({ client: new ConvokeClient({ baseUrl: server.url }) })
    let last: ConvokeUIMessage | undefined
    for await (const message of readUIMessageStream<ConvokeUIMessage>({
      stream: await send(transport, "chat-b", "read me back"),
      terminateOnError: true
    })) {
      last = message
    }
    expect(last?.role).toBe("assistant")
    expect(last?.parts).toEqual([{ type: "text", text: "Echo #1: read me back", state: "done" }])
    expect(last?.metadata?.conversationId).toMatch(UUID_V4)
    expect(last?.id).toBe(last?.metadata?.turnId)
  })

  it("continues the chat's conversation, also from a new transport over the same storage (a reload)", async () => {
    const storage = sharedStorage()
    const first = new ConvokeChatTransport({ client: new ConvokeClient({ baseUrl: server.url, storage }) })
    const one = await collect(await send(first, "chat-c", "first"))
    const conversationId = (one[0] as { messageMetadata: { conversationId: string } }).messageMetadata
      .conversationId
    expect(await first.conversationId("chat-c")).toBe(conversationId)
    expect(textOf(await collect(await send(first, "chat-c", "second")))).toBe("Echo #2: second")

    const reloaded = new ConvokeChatTransport({ client: new ConvokeClient({ baseUrl: server.url, storage }) })
    const three = await collect(await send(reloaded, "chat-c", "third"))
    expect(three[0]).toMatchObject({ type: "start", messageMetadata: { conversationId } })
    expect(textOf(three)).toBe("Echo #3: third")

    // Another chat id is another conversation.
    const other = await collect(await send(reloaded, "chat-d", "elsewhere"))
    expect(textOf(other)).toBe("Echo #1: elsewhere")
  })

  it("sends only the last user message's text, with the request body's model", async () => {
    const recorder = recordingFetch()
    const seen: Array<unknown> = []
    const client = new ConvokeClient({
      baseUrl: server.url,
      fetch: (input, init) => {
        seen.push(JSON.parse(String(init?.body)))
        return recorder.fetch(input, init)
      }
    })
    const transport = new ConvokeChatTransport({ client, model: "unified-chat" })
    const stream = await transport.sendMessages({
      trigger: "submit-message",
      chatId: "chat-e",
      messageId: undefined,
      messages: [
        userMessage("an earlier question", "u1"),
        { id: "a1", role: "assistant", parts: [{ type: "text", text: "an earlier answer" }] },
        {
          id: "u2",
          role: "user",
          parts: [
            { type: "text", text: "line one" },
            { type: "text", text: "line two" }
          ]
        }
      ],
      abortSignal: undefined,
      body: { model: "claude-sonnet-4-5" }
    })
    expect(textOf(await collect(stream))).toBe("Echo #1: line one\nline two")
    expect(seen).toEqual([{ message: "line one\nline two", stream: true, model: "claude-sonnet-4-5" }])
  })

  it("reconnects to a running turn: the whole reply from its start, same turn, nothing twice", async () => {
    const storage = sharedStorage()
    const words = Array.from({ length: 200 }, (_, index) => `w${index}`).join(" ")
    const first = new ConvokeChatTransport({ client: new ConvokeClient({ baseUrl: server.url, storage }) })
    const reader = (await send(first, "chat-f", words)).getReader()
    const start = (await reader.read()).value as Extract<UIMessageChunk, { type: "start" }>
    expect((await reader.read()).value).toMatchObject({ type: "text-start" })
    expect((await reader.read()).value).toMatchObject({ type: "text-delta" })

    // A reload: a new transport and client over the same storage; the first page is gone.
    const reloaded = new ConvokeChatTransport({ client: new ConvokeClient({ baseUrl: server.url, storage }) })
    const resumed = await reloaded.reconnectToStream({ chatId: "chat-f" })
    expect(resumed).not.toBeNull()
    const chunks = await collect(resumed!)
    expect(chunks[0]).toEqual(start)
    expect(chunks.at(-1)).toEqual({ type: "finish", finishReason: "stop" })
    expect(textOf(chunks)).toBe(`Echo #1: ${words}`)
    expect(reloaded.resumeStreamIsReplay).toBe(true)
    await reader.cancel()
  })

  it("answers null when no conversation is known for the chat, or nothing is running in it", async () => {
    const storage = sharedStorage()
    const transport = new ConvokeChatTransport({
      client: new ConvokeClient({ baseUrl: server.url, storage })
    })
    expect(await transport.reconnectToStream({ chatId: "never-used" })).toBeNull()

    // A conversation made without streaming has no turn to resume: the server answers 204.
    const response = await fetch(`${server.url}/api/v0.3/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ message: "not streamed", stream: false })
    })
    const { conversation_id } = (await response.json()) as { conversation_id: string }
    await storage.set("chat-g", conversation_id)
    expect(await transport.reconnectToStream({ chatId: "chat-g" })).toBeNull()

    // A deleted conversation has nothing to resume either.
    await storage.set("chat-h", "00000000-0000-4000-8000-000000000000")
    expect(await transport.reconnectToStream({ chatId: "chat-h" })).toBeNull()
  })
})

describe("against the test server", () => {
  let server: Awaited<ReturnType<typeof startTestServer>>
  let client: ConvokeClient
  beforeAll(async () => {
    server = await startTestServer()
    client = new ConvokeClient({ baseUrl: server.url, apiKey: ALICE })
  })
  afterAll(async () => {
    await server?.close()
  })

  const longMessage = Array.from({ length: 3000 }, (_, index) => `w${index}`).join(" ")

  it("turns an abort (the AI SDK's stop) into a stop: the server stores the turn as cancelled", async () => {
    const transport = new ConvokeChatTransport({ client })
    const controller = new AbortController()
    const reader = (await send(transport, "chat-stop", longMessage, controller.signal)).getReader()
    const start = (await reader.read()).value as { messageMetadata: { conversationId: string } }
    await reader.read()
    controller.abort()
    expect(await server.turnEnded(start.messageMetadata.conversationId)).toBe("cancelled")
    await reader.cancel()
  })

  it("with stopOnAbort: false, an abort only closes the connection", async () => {
    const transport = new ConvokeChatTransport({ client, stopOnAbort: false })
    const controller = new AbortController()
    const reader = (await send(transport, "chat-close", longMessage, controller.signal)).getReader()
    const start = (await reader.read()).value as { messageMetadata: { conversationId: string } }
    await reader.read()
    controller.abort()
    // The test server has no disconnect grace: a closed connection ends the turn at once.
    expect(await server.turnEnded(start.messageMetadata.conversationId)).toBe("client_closed")
    await reader.cancel().catch(() => {})
  })

  it("ends with an error chunk when the model fails mid-reply", async () => {
    const transport = new ConvokeChatTransport({ client })
    const chunks = await collect(await send(transport, "chat-fail", "fail please"))
    const id = chunks.find((chunk) => chunk.type === "text-start")?.id
    expect(chunks.slice(1)).toEqual([
      { type: "text-start", id },
      { type: "text-delta", id, delta: "Partial" },
      { type: "text-delta", id, delta: " reply" },
      { type: "text-end", id },
      { type: "error", errorText: "The model is overloaded" }
    ])
  })

  it("ends with an abort chunk when the turn is stopped elsewhere", async () => {
    const transport = new ConvokeChatTransport({ client })
    const reader = (await send(transport, "chat-elsewhere", longMessage)).getReader()
    const start = (await reader.read()).value as { messageMetadata: { conversationId: string } }
    await reader.read()
    const stopped = await fetch(
      `${server.url}/api/v0.3/conversations/${start.messageMetadata.conversationId}/stop`,
      { method: "POST", headers: { authorization: `Bearer ${ALICE}` } }
    )
    expect(stopped.status).toBe(202)
    const rest: Array<UIMessageChunk> = []
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      rest.push(value)
    }
    expect(rest.at(-2)).toMatchObject({ type: "text-end" })
    expect(rest.at(-1)).toMatchObject({ type: "abort" })
  })

  it("rejects sendMessages with the HTTP error before the stream (e.g. 401)", async () => {
    const transport = new ConvokeChatTransport({
      client: new ConvokeClient({ baseUrl: server.url, apiKey: "wrong-key-0123456789abcdef", retry: false })
    })
    await expect(send(transport, "chat-401", "hi")).rejects.toMatchObject({ status: 401 })
  })
})
