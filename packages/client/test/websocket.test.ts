/**
 * The WebSocket transport (`transport: "websocket"`) against the reference
 * server over loopback: one socket shared by every reply, the conversation id
 * before the first delta, two replies interleaved on one socket, stopping one
 * of them, errors before a turn starts, `client.resume()`, replies resumed
 * after the socket is cut (`CutProxy`) or goes silent (the heartbeat) — and
 * finished from the stored conversation when the server has nothing left to
 * replay (`no_turn`) —, and authentication with headers or a single-use
 * ticket. Nothing sleeps: tests
 * wait on reply states, deltas, frames sent and the proxy's cuts.
 */

import { readFileSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { CutProxy } from "@convoke/core/testing"
import { Duration } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import {
  type ChatReply,
  type ClientOptions,
  ConvokeAbortError,
  ConvokeClient,
  ConvokeError,
  ConvokeHttpError,
  ConvokeNetworkError,
  ConvokeStreamError,
  VERSION
} from "../src/index.ts"
import { quick, readInOrder, storedReply, watch, words } from "./replies.ts"
import { startForgetfulServer, startReferenceServer } from "./servers.ts"

const ALICE = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz"
const BOB = "bob-key-0123456789abcdef00-ghijklmnopqrstuvwxyz"
const MISSING = "00000000-0000-4000-8000-000000000000"

// Every reconnection and every frame that asks for something is a request: the default limit would answer 429.
const UNLIMITED = { CONVOKE_RATE_LIMIT_REQUESTS: "100000", CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "100000" }

/**
 * The global WebSocket, recording each socket the client opens (its URL and
 * upgrade headers) and each frame it sends. `deafen()` makes the newest socket
 * stop handing frames to the client (they are kept in `swallowed`), as a link
 * that died without closing would.
 */
const recordingWebSocket = () => {
  const opened: Array<{ readonly url: string; readonly headers: Record<string, string> | undefined }> = []
  const sent: Array<Record<string, unknown>> = []
  const swallowed: Array<Record<string, unknown>> = []
  const sockets: Array<{ deaf: boolean }> = []
  const waiters: Array<() => void> = []
  class Recording extends WebSocket {
    deaf = false
    constructor(url: string, options?: { readonly headers?: Record<string, string> }) {
      super(url, options as never)
      opened.push({ url, headers: options?.headers })
      sockets.push(this)
    }
    override send(data: string) {
      sent.push(JSON.parse(data))
      for (const wake of waiters.splice(0)) wake()
      super.send(data)
    }
    override addEventListener(type: string, listener: (event: any) => void) {
      if (type !== "message") return super.addEventListener(type, listener)
      super.addEventListener("message", (event: MessageEvent) => {
        if (this.deaf) swallowed.push(JSON.parse(event.data))
        else listener(event)
      })
    }
  }
  /** Resolves once a frame sent matches `predicate`. */
  const sentFrame = async (predicate: (frame: Record<string, unknown>) => boolean) => {
    while (!sent.some(predicate)) await new Promise<void>((resolve) => waiters.push(resolve))
    return sent.find(predicate)!
  }
  return {
    WebSocket: Recording as unknown as NonNullable<ClientOptions["WebSocket"]>,
    opened,
    sent,
    swallowed,
    sentFrame,
    deafen: () => {
      sockets.at(-1)!.deaf = true
    }
  }
}

/** Resolves once the reply has received `count` deltas. */
const deltasArrived = async (reply: ChatReply, count: number) => {
  let seen = 0
  for await (const _ of reply) if (++seen >= count) return
}

const wsUrl = (httpUrl: string) => `${httpUrl.replace(/^http/, "ws")}/api/v0.3/ws`

describe("the WebSocket transport against the reference server", () => {
  let server: Awaited<ReturnType<typeof startReferenceServer>>
  /** Reads and stops conversations over HTTP, beside the clients under test. */
  let direct: ConvokeClient
  const clients: Array<ConvokeClient> = []
  const socketClient = (options: ClientOptions = {}) => {
    const client = new ConvokeClient({ baseUrl: server.url, transport: "websocket", ...options })
    clients.push(client)
    return client
  }
  beforeAll(async () => {
    server = await startReferenceServer(UNLIMITED)
    direct = new ConvokeClient({ baseUrl: server.url })
  })
  afterEach(() => {
    for (const client of clients.splice(0)) client.close()
  })
  afterAll(async () => {
    await server?.close()
  })

  it("resolves the conversation id before the first delta, and every reply shares one socket", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ WebSocket: recording.WebSocket })
    const reply = client.chat({ message: "hello over a socket" })
    const { order, deltas } = await readInOrder(reply)
    expect(order).toEqual(["id", "first delta"])
    expect(deltas.length).toBeGreaterThan(1)
    expect(await reply.text).toBe("Echo #1: hello over a socket")
    expect(reply.state).toBe("done")
    const metadata = await reply.metadata
    expect(metadata).toMatchObject({ model: "unified-chat", temporary: false })
    expect(metadata.turnId).toMatch(/^[0-9a-f-]{36}$/)
    expect(reply.lastEventId).toMatch(new RegExp(`^${metadata.turnId}:\\d+$`))

    const next = client.chat({ message: "and again", conversationId: metadata.conversationId })
    expect(await next.conversationId).toBe(metadata.conversationId)
    expect(await next.text).toBe("Echo #2: and again")
    expect(recording.opened).toHaveLength(1)
    // Node's WebSocket sends the client's headers on the upgrade: no ticket.
    expect(recording.opened[0]!.url).toBe(wsUrl(server.url))
    expect(recording.opened[0]!.headers).toMatchObject({ "x-convoke-client": `node/${VERSION}` })
    expect(recording.sent.map((frame) => frame.type)).toEqual(["chat.send", "chat.send"])
    const stored = await direct.conversations.get(metadata.conversationId)
    expect(stored.messages.map((message) => message.content)).toEqual([
      "hello over a socket",
      "Echo #1: hello over a socket",
      "and again",
      "Echo #2: and again"
    ])
  })

  it("carries two replies at once on one socket, their deltas interleaved", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ WebSocket: recording.WebSocket })
    const arrivals: Array<"long" | "short"> = []
    const follow = async (reply: ChatReply, label: "long" | "short") => {
      for await (const _ of reply) arrivals.push(label)
    }
    const long = client.chat({ message: words(200) })
    const longDone = follow(long, "long")
    await deltasArrived(long, 3)
    const short = client.chat({ message: words(10) })
    await Promise.all([follow(short, "short"), longDone])
    expect(await short.text).toBe(`Echo #1: ${words(10)}`)
    expect(await long.text).toBe(`Echo #1: ${words(200)}`)
    expect(await short.conversationId).not.toBe(await long.conversationId)
    // The short reply streamed between two deltas of the long one.
    expect(arrivals.indexOf("short")).toBeGreaterThan(0)
    expect(arrivals.lastIndexOf("long")).toBeGreaterThan(arrivals.lastIndexOf("short"))
    expect(recording.opened).toHaveLength(1)
    const requestIds = recording.sent.map((frame) => frame.request_id)
    expect(new Set(requestIds).size).toBe(2)
  })

  it("stops one reply and leaves the other streaming to its end", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ WebSocket: recording.WebSocket })
    const stopped = client.chat({ message: words(300) })
    const kept = client.chat({ message: words(60) })
    await Promise.all([deltasArrived(stopped, 3), deltasArrived(kept, 3)])
    await stopped.stop()
    expect(stopped.state).toBe("stopped")
    expect(await kept.text).toBe(`Echo #1: ${words(60)}`)
    expect(kept.state).toBe("done")
    const partial = await stopped.text
    expect(partial.length).toBeLessThan(`Echo #1: ${words(300)}`.length)
    // The stop went over the socket, naming the conversation.
    expect(recording.sent.find((frame) => frame.type === "chat.stop")).toMatchObject({
      conversation_id: await stopped.conversationId
    })
    expect(recording.opened).toHaveLength(1)
    const stored = await storedReply(direct, await stopped.conversationId)
    expect(stored.status).toBe("cancelled")
    expect(stored.content.startsWith(partial)).toBe(true)
    expect((await storedReply(direct, await kept.conversationId)).status).toBe("complete")
  })

  it("rejects like HTTP before a turn starts, and the socket stays open", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ WebSocket: recording.WebSocket })
    const empty = client.chat({ message: "" })
    const error = await empty.conversationId.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ConvokeHttpError)
    expect(error).toMatchObject({ status: 400, type: "invalid_request" })
    expect((error as ConvokeHttpError).body).toMatchObject({ error: { type: "invalid_request" } })
    await expect(empty.text).rejects.toBe(error)
    expect(empty.state).toBe("failed")
    await expect(client.resume({ conversationId: MISSING })).rejects.toMatchObject({
      name: "ConvokeHttpError",
      status: 404,
      type: "not_found"
    })
    const finished = client.chat({ message: "still open" })
    await expect(
      client.resume({ conversationId: await finished.conversationId, lastEventId: "not an event id" })
    ).rejects.toMatchObject({ status: 400, type: "invalid_request" })
    expect(await finished.text).toBe("Echo #1: still open")
    expect(recording.opened).toHaveLength(1)
  })

  it("client.resume() answers undefined when nothing is left, and follows a running reply", async () => {
    const client = socketClient()
    const finished = client.chat({ message: "short" })
    const id = await finished.conversationId
    await finished.text
    expect(await client.resume({ conversationId: id, lastEventId: finished.lastEventId })).toBeUndefined()

    const message = words(200)
    const running = client.chat({ message, conversationId: id })
    await deltasArrived(running, 3)
    // Read together, synchronously: the id of the last event and the text up to it.
    const lastEventId = running.lastEventId
    const before = running.partialText
    running.abort()
    await expect(running.text).rejects.toBeInstanceOf(ConvokeAbortError)
    const resumed = await client.resume({ conversationId: id, lastEventId })
    expect(resumed).toBeDefined()
    expect(resumed!.state).toBe("streaming")
    expect((await resumed!.metadata).turnId).toBe((await running.metadata).turnId)
    expect(before + (await resumed!.text)).toBe(`Echo #2: ${message}`)
  })

  it("stop() before the metadata leaves no reply running: the turn the server started is stopped", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ WebSocket: recording.WebSocket })
    const message = `stop me at once ${Math.random()}`
    const reply = client.chat({ message })
    await recording.sentFrame((frame) => frame.type === "chat.send" && frame.message === message)
    await reply.stop()
    expect(reply.state).toBe("stopped")
    expect(await reply.text).toBe("")
    await expect(reply.metadata).rejects.toMatchObject({ name: "AbortError" })
    // The server started the turn; its metadata frame made the client stop it.
    const stop = await recording.sentFrame((frame) => frame.type === "chat.stop")
    const conversationId = stop.conversation_id as string
    expect((await direct.conversations.get(conversationId)).messages[0]?.content).toBe(message)
    expect((await storedReply(direct, conversationId)).status).toBe("cancelled")
  })

  it("resumes every reply on a new socket after the socket is cut, each exactly once", async () => {
    const proxy = await CutProxy.make(server.url)
    try {
      const recording = recordingWebSocket()
      const client = socketClient({ baseUrl: proxy.url, WebSocket: recording.WebSocket, resume: quick })
      const first = client.chat({ message: words(60) })
      const second = client.chat({ message: words(80) })
      // The network comes back as soon as a reply notices it went.
      const healOnReconnect = (state: string) => {
        if (state === "reconnecting") proxy.heal()
      }
      const watchedFirst = watch(first, healOnReconnect)
      const watchedSecond = watch(second, healOnReconnect)
      await Promise.all([deltasArrived(first, 3), deltasArrived(second, 3)])
      proxy.cut()
      await Promise.all([watchedFirst.iterated, watchedSecond.iterated])
      expect(watchedFirst.deltas.join("")).toBe(`Echo #1: ${words(60)}`)
      expect(watchedSecond.deltas.join("")).toBe(`Echo #1: ${words(80)}`)
      for (const { states } of [watchedFirst, watchedSecond]) {
        expect(states.slice(0, 4)).toEqual(["connecting", "streaming", "reconnecting", "streaming"])
        expect(states.at(-1)).toBe("done")
      }
      // One new socket for both, each reply resumed from the last event it saw.
      expect(recording.opened).toHaveLength(2)
      const resumes = recording.sent.filter((frame) => frame.type === "chat.resume")
      expect(resumes.map((frame) => frame.conversation_id).sort()).toEqual(
        [await first.conversationId, await second.conversationId].sort()
      )
      for (const resume of resumes) expect(resume.last_event_id).toMatch(/^[0-9a-f-]{36}:\d+$/)
      const stored = await direct.conversations.get(await first.conversationId)
      expect(stored.messages.at(-1)).toMatchObject({ content: `Echo #1: ${words(60)}`, status: "complete" })
    } finally {
      await proxy.close()
    }
  })

  it("fails with the network error once `attempts` reconnections in a row have failed", async () => {
    const proxy = await CutProxy.make(server.url)
    try {
      const client = socketClient({ baseUrl: proxy.url, resume: { attempts: 3, baseDelayMs: 1 } })
      const reply = client.chat({ message: words(200) })
      const { states, iterated } = watch(reply)
      await deltasArrived(reply, 3)
      // The proxy stays cut: every reconnection is refused.
      proxy.cut()
      const error = await iterated.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeNetworkError)
      expect((error as ConvokeNetworkError).conversationId).toBe(await reply.conversationId)
      expect(states).toEqual(["connecting", "streaming", "reconnecting", "failed"])
      await direct.conversations.stop(await reply.conversationId)
    } finally {
      await proxy.close()
    }
  })

  it("pings a silent link, gives it up when the pong does not come, and resumes on a new socket", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ WebSocket: recording.WebSocket, heartbeatMs: 50, resume: quick })
    const reply = client.chat({ message: words(100) })
    const { states, deltas, iterated } = watch(reply)
    await deltasArrived(reply, 3)
    // The socket stays open, but nothing it receives reaches the client any more.
    recording.deafen()
    await iterated
    expect(deltas.join("")).toBe(`Echo #1: ${words(100)}`)
    expect(states).toContain("reconnecting")
    expect(states.at(-1)).toBe("done")
    expect(recording.sent.some((frame) => frame.type === "ping")).toBe(true)
    // The server did answer the ping; the client never heard it.
    expect(recording.swallowed.some((frame) => frame.type === "pong")).toBe(true)
    expect(recording.opened).toHaveLength(2)
  })

  it("runs the README's WebSocket example verbatim", async () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
    const example = /```js\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf("## WebSocket transport")))?.[1]
    expect(example).toContain('transport: "websocket"')
    const source = example!
      .replace('"http://127.0.0.1:3000"', JSON.stringify(server.url))
      .replace(
        'from "@convoke/client"',
        `from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, "../src/index.ts")).href)}`
      )
    const folder = await mkdtemp(join(tmpdir(), "convoke-readme-"))
    const logged: Array<string> = []
    // The example's output; the server's own log lines go through console.log too.
    const isServerLog = (text: string) => /^\[\d{2}:\d{2}:\d{2}\.\d{3}\] /.test(text)
    const log = vi.spyOn(console, "log").mockImplementation((...values) => {
      const line = values.join(" ")
      if (!isServerLog(line)) logged.push(`${line}\n`)
    })
    const write = vi
      .spyOn(process.stdout, "write")
      .mockImplementation((chunk) => logged.push(String(chunk)) > 0)
    try {
      await writeFile(join(folder, "example.mjs"), source)
      await import(pathToFileURL(join(folder, "example.mjs")).href)
    } finally {
      log.mockRestore()
      write.mockRestore()
      await rm(folder, { recursive: true, force: true })
    }
    const [ids, answer, story, ...rest] = logged.join("").split("\n")
    expect(ids).toMatch(/^conversations [0-9a-f-]{36} [0-9a-f-]{36}$/)
    expect(answer).toBe("Echo #1: What time is it?")
    // The echo model may have finished the story before the stop.
    expect(story).toMatch(/^story (done: Echo #1: Tell me a long story|stopped: Echo #1:.*)$/)
    expect(rest).toEqual([""])
  })

  it("needs a WebSocket class where the runtime has none (Node 20)", () => {
    const global = globalThis.WebSocket
    vi.stubGlobal("WebSocket", undefined)
    try {
      expect(() => new ConvokeClient({ transport: "websocket" })).toThrow(ConvokeError)
      expect(() => new ConvokeClient({ transport: "websocket" })).toThrow(/`WebSocket` option/)
      expect(() => new ConvokeClient({ transport: "websocket", WebSocket: global })).not.toThrow()
      // SSE needs none.
      expect(() => new ConvokeClient()).not.toThrow()
    } finally {
      vi.unstubAllGlobals()
    }
  })
})

describe("WebSocket authentication against the reference server with API keys", () => {
  let server: Awaited<ReturnType<typeof startReferenceServer>>
  const clients: Array<ConvokeClient> = []
  const socketClient = (options: ClientOptions) => {
    const client = new ConvokeClient({ baseUrl: server.url, transport: "websocket", ...options })
    clients.push(client)
    return client
  }
  beforeAll(async () => {
    server = await startReferenceServer({ ...UNLIMITED, CONVOKE_API_KEYS: `${ALICE}:alice,${BOB}:bob` })
  })
  afterEach(() => {
    for (const client of clients.splice(0)) client.close()
  })
  afterAll(async () => {
    await server?.close()
  })

  it("sends the key on the upgrade request in Node", async () => {
    const recording = recordingWebSocket()
    const client = socketClient({ apiKey: ALICE, WebSocket: recording.WebSocket })
    const reply = client.chat({ message: "with headers" })
    expect(await reply.text).toBe("Echo #1: with headers")
    expect(recording.opened).toEqual([
      { url: wsUrl(server.url), headers: expect.objectContaining({ authorization: `Bearer ${ALICE}` }) }
    ])
    // The reply is Alice's.
    const id = await reply.conversationId
    expect((await new ConvokeClient({ baseUrl: server.url, apiKey: ALICE }).conversations.get(id)).id).toBe(
      id
    )
    await expect(
      new ConvokeClient({ baseUrl: server.url, apiKey: BOB }).conversations.get(id)
    ).rejects.toMatchObject({ status: 404 })
  })

  it("opens the socket with a single-use ticket, a fresh one for each connection", async () => {
    const proxy = await CutProxy.make(server.url)
    try {
      const recording = recordingWebSocket()
      const client = socketClient({
        baseUrl: proxy.url,
        apiKey: ALICE,
        webSocketAuth: "ticket",
        WebSocket: recording.WebSocket,
        resume: quick
      })
      const reply = client.chat({ message: words(60) })
      const { deltas, iterated } = watch(reply, (state) => {
        if (state === "reconnecting") proxy.heal()
      })
      await deltasArrived(reply, 3)
      proxy.cut()
      await iterated
      expect(deltas.join("")).toBe(`Echo #1: ${words(60)}`)
      // No credentials on the upgrade: a ticket in the URL, another one after the cut.
      expect(recording.opened).toHaveLength(2)
      const tickets = recording.opened.map(({ url, headers }) => {
        expect(headers).toBeUndefined()
        const parsed = new URL(url)
        expect(`${parsed.protocol}//${parsed.host}${parsed.pathname}`).toBe(wsUrl(proxy.url))
        return parsed.searchParams.get("ticket")
      })
      expect(tickets[0]).toMatch(/^\S{16,}$/)
      expect(tickets[1]).not.toBe(tickets[0])
      // The socket acted for the user who asked for the ticket.
      const id = await reply.conversationId
      const alice = new ConvokeClient({ baseUrl: server.url, apiKey: ALICE })
      expect((await alice.conversations.get(id)).messages).toHaveLength(2)
    } finally {
      await proxy.close()
    }
  })

  it("rejects a refused socket like HTTP: 401 with a bad key, with headers or with a ticket", async () => {
    for (const webSocketAuth of ["headers", "ticket"] as const) {
      const client = socketClient({ apiKey: "wrong-key-0123456789abcdef-ghijklmnopqrstu", webSocketAuth })
      const reply = client.chat({ message: "let me in" })
      const error = await reply.conversationId.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeHttpError)
      expect(error).toMatchObject({ status: 401, type: "unauthenticated" })
      expect(reply.state).toBe("failed")
    }
  })
})

describe("finishing from the stored conversation when the server answers no_turn", () => {
  /** Reconnects until the network is back, however long the turn takes to end. */
  const patient = { attempts: 100_000, baseDelayMs: 1, maxDelayMs: 5 }

  it("finishes a reply whose turn ended while the socket was down from the stored message", async () => {
    const server = await startForgetfulServer(Duration.minutes(1))
    const proxy = await CutProxy.make(server.url)
    const recording = recordingWebSocket()
    const client = new ConvokeClient({
      baseUrl: proxy.url,
      transport: "websocket",
      WebSocket: recording.WebSocket,
      resume: patient
    })
    try {
      const message = words(40)
      const reply = client.chat({ message })
      const { states, deltas, iterated } = watch(reply)
      await deltasArrived(reply, 3)
      proxy.cut()
      const id = await reply.conversationId
      // The turn goes on without its reader, ends and is stored; the log forgets it.
      expect(await server.turnEnded(id)).toBe("complete")
      proxy.heal()
      await iterated
      expect(deltas.join("")).toBe(`Echo #1: ${message}`)
      expect(states).toEqual(["connecting", "streaming", "reconnecting", "done"])
      // The rest came from the stored conversation, in one delta, after the server said no_turn.
      expect(recording.sent.filter((frame) => frame.type === "chat.resume")).toHaveLength(1)
    } finally {
      client.close()
      await proxy.close()
      await server.close()
    }
  })

  it("fails with the stored status when the turn was cancelled while the socket was down", async () => {
    const server = await startForgetfulServer(Duration.zero)
    const proxy = await CutProxy.make(server.url)
    const client = new ConvokeClient({ baseUrl: proxy.url, transport: "websocket", resume: patient })
    try {
      const reply = client.chat({ message: words(300) })
      const { deltas, iterated } = watch(reply)
      await deltasArrived(reply, 3)
      proxy.cut()
      const id = await reply.conversationId
      expect(await server.turnEnded(id)).not.toBe("complete")
      proxy.heal()
      const error = await iterated.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeStreamError)
      expect(error).toMatchObject({ type: "cancelled", conversationId: id })
      expect((error as ConvokeStreamError).partialText.startsWith(deltas.join(""))).toBe(true)
      expect(reply.state).toBe("failed")
    } finally {
      client.close()
      await proxy.close()
      await server.close()
    }
  })
})
