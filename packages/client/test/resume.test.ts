/**
 * Resume, stop and state against the reference server, with a real network
 * drop in between: `CutProxy` resets the client's connection after a given
 * number of SSE frames, and lets it back in (`heal`) once the reply says it
 * is reconnecting. Nothing here sleeps; tests wait on the reply's states,
 * the proxy's cuts and the server's own turn-ended signal.
 */
import { readFileSync } from "node:fs"
import { EchoLanguageModel, LanguageModel } from "@convoke/core"
import { CutProxy } from "@convoke/core/testing"
import { Duration, Effect, Layer, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ConvokeClient, ConvokeNetworkError, ConvokeStreamError, VERSION } from "../src/index.ts"
import { quick, storedReply, watch, words } from "./replies.ts"
import { startForgetfulServer, startReferenceServer } from "./servers.ts"

describe("resume and stop against the reference server, through a cutting proxy", () => {
  let server: Awaited<ReturnType<typeof startReferenceServer>>
  let direct: ConvokeClient
  beforeAll(async () => {
    // Every reconnection is a request: the default limit (60 a minute) would answer 429.
    server = await startReferenceServer({
      CONVOKE_RATE_LIMIT_REQUESTS: "100000",
      CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "100000"
    })
    direct = new ConvokeClient({ baseUrl: server.url })
  })
  afterAll(async () => {
    await server?.close()
  })

  it.each([
    { frames: 2, extraBytes: 0 },
    { frames: 3, extraBytes: 7 },
    { frames: 5, extraBytes: 3 },
    { frames: 9, extraBytes: 1 }
  ])(
    "yields the whole reply exactly once after cuts at frame $frames (+$extraBytes bytes)",
    async ({ frames, extraBytes }) => {
      const proxy = await CutProxy.make(server.url, { cutAfterFrames: frames, extraBytes })
      try {
        const client = new ConvokeClient({ baseUrl: proxy.url, resume: quick })
        const message = words(40)
        const reply = client.chat({ message })
        // The network comes back as soon as the reply notices it went (and may drop again, at the same point).
        const { states, deltas, iterated } = watch(reply, (state) => {
          if (state === "reconnecting") proxy.heal()
        })
        await iterated
        const expected = `Echo #1: ${message}`
        expect(deltas.join("")).toBe(expected)
        expect(await reply.text).toBe(expected)
        expect(states[0]).toBe("connecting")
        expect(states.slice(0, 4)).toEqual(["connecting", "streaming", "reconnecting", "streaming"])
        expect(states.at(-1)).toBe("done")
        expect(reply.state).toBe("done")
        const metadata = await reply.metadata
        expect(metadata.turnId).toMatch(/^[0-9a-f-]{36}$/)
        expect(reply.lastEventId).toMatch(new RegExp(`^${metadata.turnId}:\\d+$`))
        const stored = await direct.conversations.get(metadata.conversationId)
        expect(stored.messages.at(-1)).toMatchObject({
          role: "assistant",
          content: expected,
          status: "complete"
        })
      } finally {
        await proxy.close()
      }
    }
  )

  it("fails as before with resume: false", async () => {
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 3 })
    try {
      const client = new ConvokeClient({ baseUrl: proxy.url, resume: false })
      const reply = client.chat({ message: words(40) })
      const { states, iterated } = watch(reply)
      const error = await iterated.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeNetworkError)
      expect((error as ConvokeNetworkError).conversationId).toBe(await reply.conversationId)
      expect(states).toEqual(["connecting", "streaming", "failed"])
      // The per-call option wins over the client's.
      proxy.heal()
      const resuming = new ConvokeClient({ baseUrl: proxy.url, resume: quick }).chat({
        message: words(10),
        resume: false
      })
      await expect(resuming.text).rejects.toBeInstanceOf(ConvokeNetworkError)
    } finally {
      await proxy.close()
    }
  })

  it("fails with the network error once `attempts` reconnections in a row have failed", async () => {
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 3 })
    try {
      const client = new ConvokeClient({ baseUrl: proxy.url, resume: { attempts: 3, baseDelayMs: 1 } })
      const reply = client.chat({ message: words(40) })
      const { states, iterated } = watch(reply)
      // The proxy stays cut: every reconnection is reset.
      const error = await iterated.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeNetworkError)
      expect(states).toEqual(["connecting", "streaming", "reconnecting", "failed"])
    } finally {
      await proxy.close()
    }
  })

  it("counts a reconnection that only sends the metadata again as failed: no endless loop", async () => {
    // Every connection passes the metadata event, then drops.
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 1 })
    try {
      const client = new ConvokeClient({ baseUrl: proxy.url, resume: { attempts: 3, baseDelayMs: 1 } })
      const reply = client.chat({ message: words(40) })
      const { states, deltas, iterated } = watch(reply, (state) => {
        if (state === "reconnecting") proxy.heal()
      })
      const error = await iterated.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeNetworkError)
      expect(deltas).toEqual([])
      expect(states.filter((state) => state === "reconnecting")).toHaveLength(3)
      expect(states.at(-1)).toBe("failed")
    } finally {
      await proxy.close()
    }
  })

  it("stop() ends the reply quietly with the text so far, and the server stores it as cancelled", async () => {
    const reply = direct.chat({ message: words(300) })
    const received: Array<string> = []
    for await (const delta of reply) {
      received.push(delta)
      if (received.length === 3) await reply.stop()
    }
    // Deltas received before the call are still delivered; none after it.
    expect(received.length).toBeGreaterThanOrEqual(3)
    expect(reply.state).toBe("stopped")
    expect(await reply.text).toBe(received.join(""))
    const stored = await storedReply(direct, await reply.conversationId)
    expect(stored.status).toBe("cancelled")
    expect(stored.content.startsWith(received.join(""))).toBe(true)
  })

  it("stop() before the metadata aborts the request: nothing is created, the reply ends stopped", async () => {
    const reply = direct.chat({ message: "never mind" })
    await reply.stop()
    expect(reply.state).toBe("stopped")
    expect(await reply.text).toBe("")
    const deltas: Array<string> = []
    for await (const delta of reply) deltas.push(delta)
    expect(deltas).toEqual([])
    await expect(reply.metadata).rejects.toMatchObject({ name: "AbortError" })
  })

  it("stop() while reconnecting stops the turn too", async () => {
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 3 })
    try {
      const client = new ConvokeClient({
        baseUrl: proxy.url,
        retry: false,
        resume: { attempts: 1000, baseDelayMs: 1 }
      })
      const reply = client.chat({ message: words(1000) })
      const reconnecting = new Promise<void>((resolve) =>
        reply.onStateChange((state) => state === "reconnecting" && resolve())
      )
      await reconnecting
      // The proxy is still cut; the stop request goes to the server directly.
      const stopping = reply.stop()
      await expect(stopping).rejects.toBeInstanceOf(ConvokeNetworkError)
      expect(reply.state).toBe("stopped")
      await direct.conversations.stop(await reply.conversationId)
      expect((await storedReply(direct, await reply.conversationId)).status).toBe("cancelled")
    } finally {
      await proxy.close()
    }
  })

  it("client.resume() answers undefined when nothing runs, and a working reply when a turn does", async () => {
    const finished = direct.chat({ message: "short" })
    const id = await finished.conversationId
    await finished.text
    // The ended turn is still buffered: resuming after its last event has nothing to send.
    expect(await direct.resume({ conversationId: id, lastEventId: finished.lastEventId })).toBeUndefined()

    const message = words(200)
    const running = direct.chat({ message, conversationId: id })
    const runningId = await running.conversationId
    const firstDeltas: Array<string> = []
    for await (const delta of running) {
      firstDeltas.push(delta)
      if (firstDeltas.length === 3) break
    }
    // Read together, synchronously: the id of the last event and the text up to it.
    const lastEventId = running.lastEventId
    const before = running.partialText
    running.abort()
    const resumed = await direct.resume({ conversationId: runningId, lastEventId })
    expect(resumed).toBeDefined()
    expect(resumed!.state).toBe("streaming")
    expect((await resumed!.metadata).turnId).toBe((await running.metadata).turnId)
    const rest = await resumed!.text
    expect(before.startsWith(firstDeltas.join(""))).toBe(true)
    expect(before + rest).toBe(`Echo #2: ${message}`)
    await expect(
      direct.resume({ conversationId: "00000000-0000-4000-8000-000000000000" })
    ).rejects.toMatchObject({
      name: "ConvokeHttpError",
      status: 404
    })
  })

  it("a reply from client.resume() can be stopped", async () => {
    const running = direct.chat({ message: words(300) })
    const id = await running.conversationId
    running.abort()
    const resumed = await direct.resume({ conversationId: id })
    expect(resumed).toBeDefined()
    const received: Array<string> = []
    for await (const delta of resumed!) {
      received.push(delta)
      if (received.length === 2) await resumed!.stop()
    }
    expect(received.join("")).toBe(await resumed!.text)
    expect(resumed!.state).toBe("stopped")
    expect((await storedReply(direct, id)).status).toBe("cancelled")
  })

  it("says X-Convoke-Client: node/<version>, and the server counts it as node", async () => {
    const packageJson = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    expect(VERSION).toBe(packageJson.version)
    const count = async () => {
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      return metrics
        .split("\n")
        .filter((line) => line.startsWith("chat_requests_total{") && line.includes('client="node"'))
        .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)
    }
    const before = await count()
    await direct.chat({ message: "count me" }).text
    expect(await count()).toBe(before + 1)
    const headers: Array<string | null> = []
    const recording = new ConvokeClient({
      baseUrl: server.url,
      fetch: (input, init) => {
        headers.push(new Headers(init?.headers).get("x-convoke-client"))
        return fetch(input, init)
      }
    })
    await recording.chat({ message: "hi" }).text
    await recording.conversations.list()
    expect(headers).toEqual([`node/${VERSION}`, `node/${VERSION}`])
    // A caller's own header wins, whatever its case.
    const overriding = new ConvokeClient({
      baseUrl: server.url,
      headers: { "X-Convoke-Client": "unity/9.9.9" },
      fetch: (input, init) => {
        headers.push(new Headers(init?.headers).get("x-convoke-client"))
        return fetch(input, init)
      }
    })
    await overriding.conversations.list()
    expect(headers.at(-1)).toBe("unity/9.9.9")
  })
})

describe("finishing from the stored conversation when there is nothing to replay (204)", () => {
  /** A client whose reconnections wait until `open()`: the network stays down until the test says so. */
  const gatedClient = (baseUrl: string) => {
    let open!: () => void
    const gate = new Promise<void>((resolve) => {
      open = resolve
    })
    const client = new ConvokeClient({
      baseUrl,
      resume: quick,
      fetch: async (input, init) => {
        if (String(input).endsWith("/stream")) await gate
        return fetch(input, init)
      }
    })
    return { client, open }
  }

  it("finishes a reply whose turn ended while disconnected from the stored message", async () => {
    const server = await startForgetfulServer(Duration.minutes(1))
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 3 })
    try {
      const { client, open } = gatedClient(proxy.url)
      const message = words(40)
      const reply = client.chat({ message })
      const { states, deltas, iterated } = watch(reply)
      const id = await reply.conversationId
      await proxy.cutDone
      // The turn goes on without its reader, ends and is stored; the log forgets it.
      expect(await server.turnEnded(id)).toBe("complete")
      proxy.heal()
      open()
      await iterated
      const expected = `Echo #1: ${message}`
      expect(deltas.join("")).toBe(expected)
      expect(deltas.length).toBe(3)
      expect(states).toEqual(["connecting", "streaming", "reconnecting", "done"])
    } finally {
      await proxy.close()
      await server.close()
    }
  })

  it("fails with the stored status when the turn was cancelled while disconnected", async () => {
    const server = await startForgetfulServer(Duration.zero)
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 3 })
    try {
      const { client, open } = gatedClient(proxy.url)
      const reply = client.chat({ message: words(300) })
      const { deltas, iterated } = watch(reply)
      const id = await reply.conversationId
      await proxy.cutDone
      expect(await server.turnEnded(id)).not.toBe("complete")
      proxy.heal()
      open()
      const error = await iterated.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConvokeStreamError)
      expect(error).toMatchObject({ type: "cancelled", conversationId: id })
      expect((error as ConvokeStreamError).partialText.startsWith(deltas.join(""))).toBe(true)
      expect(reply.state).toBe("failed")
    } finally {
      await proxy.close()
      await server.close()
    }
  })

  it("treats a 204 while the stored conversation still runs the turn as transient, and retries", async () => {
    // The echo model, holding its sixth word until the test lets it go.
    let release!: () => void
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    const echo = EchoLanguageModel.make({ delay: Duration.zero })
    const held = Layer.succeed(LanguageModel.LanguageModel, {
      ...echo,
      streamText: (request) => {
        let words = 0
        return echo
          .streamText(request)
          .pipe(
            Stream.tap((part) =>
              part._tag === "TextDelta" && ++words === 6 ? Effect.promise(() => released) : Effect.void
            )
          )
      }
    })
    // The log keeps one event per turn: events 1-4 are gone by the time the client is back (204).
    const server = await startForgetfulServer(Duration.minutes(1), { model: held, maxEventsPerTurn: 1 })
    const proxy = await CutProxy.make(server.url, { cutAfterFrames: 3 })
    try {
      let sawRunning = false
      const client = new ConvokeClient({
        baseUrl: proxy.url,
        resume: { attempts: 1000, baseDelayMs: 1, maxDelayMs: 5 },
        fetch: async (input, init) => {
          const response = await fetch(input, init)
          if (/\/conversations\/[^/]+$/.test(new URL(String(input)).pathname)) {
            const body = await response.clone().json()
            // The turn is still running: now let it finish.
            if (body.running_turn !== null && !sawRunning) {
              sawRunning = true
              release()
            }
          }
          return response
        }
      })
      const message = words(20)
      const reply = client.chat({ message })
      const { states, deltas, iterated } = watch(reply, (state) => {
        if (state === "reconnecting") proxy.heal()
      })
      await iterated
      expect(sawRunning).toBe(true)
      expect(deltas.join("")).toBe(`Echo #1: ${message}`)
      expect(states.at(-1)).toBe("done")
    } finally {
      await proxy.close()
      await server.close()
    }
  })
})
