/**
 * The client bundled for the browser, running in headless Chromium against
 * the reference server: the page is served from the server's own origin (the
 * test intercepts one navigation), so every request is a real same-origin
 * request over a loopback socket.
 */
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { VERSION } from "../src/index.ts"
import { bundleClient, hasChromium, launchChromium } from "./browser.ts"
import { startReferenceServer } from "./servers.ts"

// Needs Debian's chromium; .ci/run installs it, so CI never skips this.
describe.skipIf(!hasChromium && !process.env.CI)("in Chromium", () => {
  let server: Awaited<ReturnType<typeof startReferenceServer>>
  let browser: Browser
  let page: Page

  beforeAll(async () => {
    const [started, bundle, launched] = await Promise.all([
      startReferenceServer(),
      bundleClient(),
      // The test page is a fulfilled route, not a response from the loopback server: Chromium's
      // local network access checks would count it as a public page and block its WebSockets to
      // 127.0.0.1 (a page the server serves itself is loopback, as the web demo's tests show).
      launchChromium(["--disable-features=LocalNetworkAccessChecks"])
    ])
    server = started
    browser = launched
    page = await browser.newPage()
    await page.route(`${server.url}/client-test/**`, (route) => {
      const path = new URL(route.request().url()).pathname
      return path.endsWith("client.js")
        ? route.fulfill({ contentType: "text/javascript", body: bundle })
        : route.fulfill({
            contentType: "text/html",
            body: '<!doctype html><script type="module">import * as Convoke from "./client.js"; window.Convoke = Convoke; document.title = "ready"</script>'
          })
    })
    await page.goto(`${server.url}/client-test/index.html`)
    await page.waitForFunction(() => document.title === "ready")
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  it("gets the id before the first delta, streams the reply, and resumes", async () => {
    const result = await page.evaluate(async () => {
      const { ConvokeClient } = (window as any).Convoke
      const client = new ConvokeClient()
      const order: Array<string> = []
      const reply = client.chat({ message: "hello from chromium" })
      reply.conversationId.then(() => order.push("id"))
      const deltas: Array<string> = []
      for await (const delta of reply) {
        if (deltas.length === 0) order.push("first delta")
        deltas.push(delta)
      }
      const id = await reply.conversationId
      const resumed = client.chat({ message: "again", conversationId: id })
      return {
        order,
        id,
        text: deltas.join(""),
        resumedId: await resumed.conversationId,
        resumedText: await resumed.text
      }
    })
    expect(result.order).toEqual(["id", "first delta"])
    expect(result.text).toBe("Echo #1: hello from chromium")
    expect(result.resumedId).toBe(result.id)
    expect(result.resumedText).toBe("Echo #2: again")
  })

  it("over a WebSocket opened with a ticket: the id before the first delta, two replies on one socket", async () => {
    const sockets: Array<string> = []
    const record = (socket: import("playwright-core").WebSocket) => sockets.push(socket.url())
    page.on("websocket", record)
    try {
      const result = await page.evaluate(async () => {
        const { ConvokeClient } = (window as any).Convoke
        const client = new ConvokeClient({ transport: "websocket" })
        const order: Array<string> = []
        const reply = client.chat({ message: "hello over a socket" })
        reply.conversationId.then(() => order.push("id"))
        const deltas: Array<string> = []
        for await (const delta of reply) {
          if (deltas.length === 0) order.push("first delta")
          deltas.push(delta)
        }
        const id = await reply.conversationId
        const [again, other] = [
          client.chat({ message: "again", conversationId: id }),
          client.chat({ message: "another conversation" })
        ]
        const texts = await Promise.all([again.text, other.text])
        const empty = await client
          .chat({ message: "" })
          .text.catch((error: any) => ({ name: error.name, status: error.status, type: error.type }))
        client.close()
        return { order, text: deltas.join(""), texts, sameId: (await again.conversationId) === id, empty }
      })
      expect(result.order).toEqual(["id", "first delta"])
      expect(result.text).toBe("Echo #1: hello over a socket")
      expect(result.texts).toEqual(["Echo #2: again", "Echo #1: another conversation"])
      expect(result.sameId).toBe(true)
      expect(result.empty).toEqual({ name: "ConvokeHttpError", status: 400, type: "invalid_request" })
      // One socket for all three, opened with a ticket: a browser cannot send headers on it.
      expect(sockets).toHaveLength(1)
      expect(sockets[0]).toMatch(
        new RegExp(`^${server.url.replace(/^http/, "ws")}/api/v0\\.3/ws\\?ticket=\\S+$`)
      )
    } finally {
      page.off("websocket", record)
    }
  })

  it("aborts mid-stream with an AbortError carrying the partial text", async () => {
    const result = await page.evaluate(async () => {
      const { ConvokeClient } = (window as any).Convoke
      const reply = new ConvokeClient().chat({
        message: Array.from({ length: 300 }, (_, i) => `w${i}`).join(" ")
      })
      const received: Array<string> = []
      try {
        for await (const delta of reply) {
          received.push(delta)
          if (received.length === 2) reply.abort()
        }
        return { name: "none", partial: "", received: received.join("") }
      } catch (error: any) {
        return { name: error.name, partial: error.partialText, received: received.join("") }
      }
    })
    expect(result.name).toBe("AbortError")
    expect(result.partial).toBe(result.received)
  })

  it("remembers the conversation in localStorage across page loads", async () => {
    const first = await page.evaluate(async () => {
      const { ConvokeClient, ConversationStorage } = (window as any).Convoke
      const client = new ConvokeClient({ storage: ConversationStorage.localStorage() })
      const reply = client.chat({ message: "remember me" })
      await reply.text
      return await reply.conversationId
    })
    await page.reload()
    await page.waitForFunction(() => document.title === "ready")
    const second = await page.evaluate(async () => {
      const { ConvokeClient, ConversationStorage } = (window as any).Convoke
      const reply = new ConvokeClient({ storage: ConversationStorage.localStorage() }).chat({
        message: "still me"
      })
      return {
        id: await reply.conversationId,
        text: await reply.text,
        stored: localStorage.getItem("convoke:conversation:default")
      }
    })
    expect(second).toEqual({ id: first, text: "Echo #2: still me", stored: first })
  })

  it("surfaces an HTTP error as ConvokeHttpError with the common body", async () => {
    const error = await page.evaluate(async () => {
      const { ConvokeClient, ConvokeHttpError } = (window as any).Convoke
      try {
        await new ConvokeClient().chat({ message: "" }).conversationId
        return null
      } catch (caught: any) {
        return { isHttp: caught instanceof ConvokeHttpError, status: caught.status, type: caught.type }
      }
    })
    expect(error).toEqual({ isHttp: true, status: 400, type: "invalid_request" })
  })

  it("says X-Convoke-Client: web/<version>, and the server counts it as web", async () => {
    const count = async () => {
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      return metrics
        .split("\n")
        .filter((line) => line.startsWith("chat_requests_total{") && line.includes('client="web"'))
        .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)
    }
    const before = await count()
    const sent: Array<string | undefined> = []
    const record = (request: import("playwright-core").Request) => {
      if (new URL(request.url()).pathname.startsWith("/api/"))
        sent.push(request.headers()["x-convoke-client"])
    }
    page.on("request", record)
    try {
      await page.evaluate(async () => {
        const { ConvokeClient } = (window as any).Convoke
        const client = new ConvokeClient()
        await client.chat({ message: "count me as web" }).text
        await client.conversations.list()
      })
    } finally {
      page.off("request", record)
    }
    expect(sent).toEqual([`web/${VERSION}`, `web/${VERSION}`])
    expect(await count()).toBe(before + 1)
  })
})
