/**
 * The demo page, built with Vite and served by the reference server, driven in
 * headless Chromium: send a message and see the id before the reply is done,
 * stop a reply (stored as cancelled), see "reconnecting…" through a real
 * network drop (a `CutProxy` between the page and the server) and the whole
 * reply once after it, and pick a running reply up after a reload — each over
 * both transports the page can switch between (SSE, and one WebSocket opened
 * with a ticket) —, reopen a conversation, and run the README's browser
 * snippet verbatim in the page.
 *
 * The README snippet calls `http://127.0.0.1:3000`; Chromium's host resolver
 * maps that address to a second server (which listens on a free port), so the
 * page, the snippet and the server share one origin, as they do for a user who
 * ran `npm start`. That server's model takes as long as a real model's first
 * token before the reply starts: a read returns all the bytes that have
 * arrived, so a page whose renderer runs late (a loaded machine) would get the
 * metadata event together with the reply's first words if they came 10 ms
 * apart, as they do on the demo's server.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConvokeClient } from "@convoke/client"
import { CutProxy } from "@convoke/core/testing"
import { type RunningServer, start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"
import type { Page, WebSocket } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Demo, root, runnable, screenshot, startDemo, UUID_V4 } from "./support.ts"

/** The demo server's address in the page (Chromium maps it to the server's port). */
const ORIGIN = "http://127.0.0.1:3001"

const TRANSPORTS = ["sse", "websocket"] as const
type Transport = (typeof TRANSPORTS)[number]

/** The README's browser snippet: the js block of the quick start that reads the first chunk. */
const readmeSnippet = () => {
  const readme = readFileSync(join(root, "README.md"), "utf8")
  const block = [...readme.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((match) => match[1]!)
    .find((code) => code.includes("reader.read()"))
  if (block === undefined) throw new Error("README.md has no browser snippet reading the first chunk")
  return block
}

describe.skipIf(!runnable)("web demo in Chromium", () => {
  let demo: Demo
  let server: RunningServer
  let page: Page
  // The README's server: `npm start` on embedded defaults, its model as slow to start as a real one.
  const readmeFolder = mkdtempSync(join(tmpdir(), "convoke-web-readme-"))
  let readmeServer: RunningServer | undefined

  beforeAll(async () => {
    // Any page of the server will do for the snippet: one blank page.
    writeFileSync(join(readmeFolder, "index.html"), "<!doctype html><title>Convoke</title>\n")
    readmeServer = await start(
      load([], {
        PORT: "0",
        CONVOKE_ECHO_DELAY_MS: "500",
        CONVOKE_DATA_DIR: join(readmeFolder, "data"),
        CONVOKE_WEB_DIR: readmeFolder
      })
    )
    const readmePort = readmeServer.port
    demo = await startDemo({
      name: "web",
      echoDelayMs: 10,
      // Each test runs on both transports, and every ticket, socket and frame asking for a turn
      // counts: the default budget (60 requests a minute) would run out.
      settings: { CONVOKE_RATE_LIMIT_REQUESTS: "100000", CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "100000" },
      // The demo's address and the README snippet's, on each server's port.
      chromiumArgs: (server) => [
        `--host-resolver-rules=MAP 127.0.0.1:3001 127.0.0.1:${server.port},MAP 127.0.0.1:3000 127.0.0.1:${readmePort}`
      ]
    })
    server = demo.server
    page = await demo.browser.newPage({ viewport: { width: 1100, height: 720 } })
    // Records, in the page, the order in which the id and the finished reply appear.
    await page.addInitScript(() => {
      const timeline: Array<{ what: string; replyLength: number }> = []
      ;(window as any).timeline = timeline
      const lastReply = () => [...document.querySelectorAll('#messages li[data-role="assistant"]')].at(-1)
      new MutationObserver(() => {
        const id = document.getElementById("conversation-id")
        const reply = lastReply() as HTMLElement | undefined
        const length = reply?.textContent?.length ?? 0
        if (
          id?.dataset.state === "known" &&
          !timeline.some((entry) => entry.what === `id ${id.textContent}`)
        ) {
          timeline.push({ what: `id ${id.textContent}`, replyLength: length })
        }
        if (reply?.dataset.state === "complete" && !timeline.some((entry) => entry.what === "complete")) {
          timeline.push({ what: "complete", replyLength: length })
        }
      }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true })
    })
  }, 120_000)

  afterAll(async () => {
    await demo?.close()
    await readmeServer?.close()
    rmSync(readmeFolder, { recursive: true, force: true })
  })

  /**
   * Opens the page at `url` with the transport switch set to `transport`, and
   * records the WebSockets the page opens from then on.
   */
  const open = async (url: string, transport: Transport) => {
    await page.goto(url)
    await page.check(`input[name="transport"][value="${transport}"]`)
    const sockets: Array<WebSocket> = []
    const record = (socket: WebSocket) => sockets.push(socket)
    page.on("websocket", record)
    return {
      sockets,
      /** Stops recording; the sockets the page opened, by URL. */
      done: () => {
        page.off("websocket", record)
        return sockets.map((socket) => socket.url())
      }
    }
  }

  /** What `open` recorded matches the transport: no socket for SSE, sockets opened with tickets for WebSocket. */
  const expectSockets = (urls: ReadonlyArray<string>, transport: Transport, origin: string) => {
    if (transport === "sse") return expect(urls).toEqual([])
    expect(urls.length).toBeGreaterThan(0)
    for (const url of urls) {
      expect(url.startsWith(`${origin.replace(/^http/, "ws")}/api/v0.3/ws?ticket=`)).toBe(true)
    }
    // A fresh ticket for each socket.
    expect(new Set(urls).size).toBe(urls.length)
  }

  const send = async (message: string) => {
    await page.fill("#message", message)
    await page.click("#send")
  }
  const lastReply = () => page.locator('#messages li[data-role="assistant"]').last()

  it("serves the page at / and keeps the API's JSON answers beside it", async () => {
    const response = await page.goto(`${ORIGIN}/`)
    expect(response?.status()).toBe(200)
    expect(response?.headers()["content-security-policy"]).toContain("default-src 'self'")
    await expect(page.title()).resolves.toBe("Convoke demo")
    const missing = await fetch(`${server.url}/api/v0.3/nothing-here`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ error: { type: "not_found" } })
    const traversal = await fetch(`${server.url}/..%2f..%2fpackage.json`)
    expect(traversal.headers.get("content-type")).not.toContain("text/html")
    expect(traversal.status).toBe(404)
  })

  it.each(TRANSPORTS)(
    "shows the conversation id, with its time, before the reply has finished (%s)",
    async (transport) => {
      const sockets = await open(`${ORIGIN}/`, transport)
      const words = Array.from({ length: 30 }, (_, index) => `word${index}`).join(" ")
      await send(words)
      await expect.poll(() => lastReply().getAttribute("data-state"), { timeout: 20_000 }).toBe("complete")
      const timeline: Array<{ what: string; replyLength: number }> = await page.evaluate(
        () => (window as any).timeline
      )
      const id = (await page.textContent("#conversation-id"))!
      expect(id).toMatch(UUID_V4)
      expect(timeline.map((entry) => entry.what)).toEqual([`id ${id}`, "complete"])
      const final = `Echo #1: ${words}`
      expect(timeline[0]!.replyLength).toBeLessThan(final.length)
      expect(await lastReply().textContent()).toBe(final)
      expect(await page.textContent("#timing")).toMatch(
        /^id after [\d.]+ ms · first text after [\d.]+ ms · complete after [\d.]+ ms$/
      )
      expect(page.url()).toBe(`${ORIGIN}/#/conversations/${id}`)
      expect(await lastReply().getAttribute("data-transport")).toBe(transport)
      expectSockets(sockets.done(), transport, ORIGIN)
      await screenshot(page, transport === "sse" ? "web-demo.png" : "web-demo-websocket.png")
    }
  )

  it.each(TRANSPORTS)("stops a reply and keeps what arrived (%s)", async (transport) => {
    const sockets = await open(`${ORIGIN}/`, transport)
    await send(Array.from({ length: 300 }, (_, index) => `w${index}`).join(" "))
    await expect.poll(async () => (await lastReply().textContent())?.length ?? 0).toBeGreaterThan(20)
    await page.click("#stop")
    await expect.poll(() => lastReply().getAttribute("data-state")).toBe("stopped")
    const stopped = (await lastReply().textContent())!
    expect(stopped.startsWith("Echo #1: w0")).toBe(true)
    expect(stopped.length).toBeLessThan(300 * 4)
    expect(await page.isDisabled("#stop")).toBe(true)
    // Stop ends the turn on the server, which stores what it had as cancelled.
    const id = (await page.textContent("#conversation-id"))!
    const client = new ConvokeClient({ baseUrl: server.url })
    let stored = (await client.conversations.get(id)).messages.at(-1)
    while (stored?.status === "streaming") stored = (await client.conversations.get(id)).messages.at(-1)
    expect(stored).toMatchObject({ role: "assistant", status: "cancelled" })
    expect(stored!.content.startsWith(stopped)).toBe(true)
    expectSockets(sockets.done(), transport, ORIGIN)
  })

  it.each(TRANSPORTS)(
    "shows reconnecting… while the network is down, then the whole reply exactly once (%s)",
    async (transport) => {
      const proxy = await CutProxy.make(server.url)
      try {
        // The page and its requests go through the proxy (its own origin).
        const sockets = await open(`${proxy.url}/`, transport)
        await page.evaluate(() => {
          const connection = document.getElementById("connection")!
          new MutationObserver(() => {
            if (!connection.hidden) (window as any).sawReconnecting = true
          }).observe(connection, { attributes: true })
        })
        const words = Array.from({ length: 150 }, (_, index) => `w${index}`).join(" ")
        await send(words)
        await expect.poll(async () => (await lastReply().textContent())?.length ?? 0).toBeGreaterThan(20)
        proxy.cut()
        await page.locator("#connection").waitFor({ state: "visible" })
        expect(await page.textContent("#connection")).toBe("reconnecting…")
        proxy.heal()
        await expect.poll(() => lastReply().getAttribute("data-state"), { timeout: 20_000 }).toBe("complete")
        expect(await lastReply().textContent()).toBe(`Echo #1: ${words}`)
        expect(await page.evaluate(() => (window as any).sawReconnecting)).toBe(true)
        expect(await page.isHidden("#connection")).toBe(true)
        expect(await page.locator('#messages li[data-role="assistant"]').count()).toBe(1)
        const urls = sockets.done()
        expectSockets(urls, transport, proxy.url)
        // Over WebSocket the reply came back on a second socket.
        if (transport === "websocket") expect(urls).toHaveLength(2)
      } finally {
        await proxy.close()
      }
    }
  )

  it.each(TRANSPORTS)("picks a running reply up again after a reload (%s)", async (transport) => {
    const sockets = await open(`${ORIGIN}/`, transport)
    const words = Array.from({ length: 300 }, (_, index) => `w${index}`).join(" ")
    await send(words)
    await expect.poll(async () => (await lastReply().textContent())?.length ?? 0).toBeGreaterThan(20)
    const id = (await page.textContent("#conversation-id"))!
    // The reload drops the stream; the server keeps the turn going for its grace window.
    await page.reload()
    await expect.poll(() => page.textContent("#conversation-id")).toBe(id)
    await expect.poll(() => lastReply().getAttribute("data-state"), { timeout: 20_000 }).toBe("complete")
    expect(await page.locator("#messages li").allTextContents()).toEqual([words, `Echo #1: ${words}`])
    // The switch is remembered across the reload, and the reply was picked up over the same transport.
    expect(await page.isChecked(`input[name="transport"][value="${transport}"]`)).toBe(true)
    const urls = sockets.done()
    expectSockets(urls, transport, ORIGIN)
    if (transport === "websocket") expect(urls).toHaveLength(2)
  })

  it("lists conversations and reopens one with its messages, then continues it", async () => {
    await page.goto(`${ORIGIN}/`)
    await send("remember this conversation")
    await expect.poll(() => lastReply().getAttribute("data-state")).toBe("complete")
    const id = (await page.textContent("#conversation-id"))!
    await page.click("#new-conversation")
    expect(await page.locator("#messages li").count()).toBe(0)
    await page.reload()
    const entry = page.locator(`#conversations li[data-id="${id}"] button`)
    await entry.waitFor()
    expect(await entry.textContent()).toContain("remember this conversation")
    await entry.click()
    await expect.poll(() => page.textContent("#conversation-id")).toBe(id)
    expect(await page.locator("#messages li").allTextContents()).toEqual([
      "remember this conversation",
      "Echo #1: remember this conversation"
    ])
    await send("and continue")
    await expect.poll(() => lastReply().getAttribute("data-state")).toBe("complete")
    expect(await lastReply().textContent()).toBe("Echo #2: and continue")
    expect(await page.textContent("#conversation-id")).toBe(id)
    // A link to the conversation opens it too.
    await page.goto(`${ORIGIN}/#/conversations/${id}`)
    await expect.poll(() => page.locator("#messages li").count()).toBe(4)
  })

  it("runs the README's browser snippet verbatim: the id comes from the first reader.read()", async () => {
    await page.goto("http://127.0.0.1:3000/")
    // The snippet logs the id; the console event may reach the test after `evaluate` has returned.
    const idLogged = page.waitForEvent("console", { predicate: (message) => UUID_V4.test(message.text()) })
    const snippet = readmeSnippet()
    const firstEvent = await page.evaluate(`(async () => {\n${snippet}\nreturn firstEvent\n})()`)
    expect(firstEvent).toMatchObject({ type: "metadata", model: "unified-chat" })
    expect((firstEvent as { conversation_id: string }).conversation_id).toMatch(UUID_V4)
    expect((await idLogged).text()).toBe((firstEvent as { conversation_id: string }).conversation_id)
  })
})
