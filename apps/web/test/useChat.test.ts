/**
 * The `useChat` page (`use-chat.html`: React, `@ai-sdk/react`'s `useChat`,
 * `@convoke/client/ai-sdk`'s transport), built with Vite and served by the
 * reference server, driven in headless Chromium: it is linked from the main
 * page, shows the conversation id from the first event before the reply is
 * done, starts from the stored messages after a reload, stops a reply
 * (stored as `cancelled`), and resumes a reply still running after
 * `page.reload()`, ending with the whole of it.
 *
 * The echo model waits 25 ms before each word, so a reply of a few hundred
 * words is still running when the page reloads; the tests wait on what the
 * page shows and what the server says, never on time.
 */
import type { RunningServer } from "@convoke/server/src/Server.ts"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Demo, runnable, screenshot, startDemo, UUID_V4 } from "./support.ts"

interface StoredConversation {
  readonly messages: ReadonlyArray<{
    readonly role: string
    readonly content: string
    readonly status: string
  }>
  readonly running_turn: { readonly turn_id: string } | null
}

const words = (count: number) => Array.from({ length: count }, (_, index) => `w${index}`).join(" ")

describe.skipIf(!runnable)("useChat page in Chromium", () => {
  let demo: Demo
  let server: RunningServer
  let page: Page

  beforeAll(async () => {
    demo = await startDemo({ name: "use-chat", echoDelayMs: 25 })
    server = demo.server
    page = await demo.browser.newPage({ viewport: { width: 1000, height: 720 } })
    // Records, in the page, the reply's length when the id first shows and when the reply is done.
    await page.addInitScript(() => {
      const timeline: Array<{ what: string; replyLength: number }> = []
      ;(window as any).timeline = timeline
      new MutationObserver(() => {
        const id = document.getElementById("conversation-id")
        const status = document.getElementById("chat-status")?.dataset.status
        const reply = [...document.querySelectorAll('#messages li[data-role="assistant"]')].at(-1)
        const length = reply?.textContent?.length ?? 0
        if (id?.dataset.state === "known" && !timeline.some((entry) => entry.what.startsWith("id "))) {
          timeline.push({ what: `id ${id.textContent}`, replyLength: length })
        }
        if (
          status === "ready" &&
          length > 0 &&
          timeline.some((entry) => entry.what.startsWith("id ")) &&
          !timeline.some((entry) => entry.what === "ready")
        ) {
          timeline.push({ what: "ready", replyLength: length })
        }
      }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true })
    })
  }, 120_000)

  afterAll(async () => {
    await demo?.close()
  })

  const open = async () => {
    const response = await page.goto(`${server.url}/use-chat.html`)
    expect(response?.status()).toBe(200)
    // A fresh chat for each test: the page keeps its chat id in localStorage.
    await page.click("#new-chat")
    await expect.poll(() => page.locator("#messages li").count()).toBe(0)
  }
  const send = async (message: string) => {
    await page.fill("#message", message)
    await page.click("#send")
  }
  const status = () => page.getAttribute("#chat-status", "data-status")
  const lastReply = () => page.locator('#messages li[data-role="assistant"]').last()
  const replyText = async () =>
    (await page.locator('#messages li[data-role="assistant"]').count()) === 0
      ? ""
      : ((await lastReply().textContent()) ?? "")
  const stored = async (conversationId: string): Promise<StoredConversation> => {
    const response = await fetch(`${server.url}/api/v0.3/conversations/${conversationId}`)
    expect(response.status).toBe(200)
    return (await response.json()) as StoredConversation
  }

  it("is linked from the main page and served with the page's security headers", async () => {
    await page.goto(`${server.url}/`)
    await page.click('a[href="/use-chat.html"]')
    await expect.poll(() => page.title()).toBe("Convoke with useChat")
    const response = await page.goto(`${server.url}/use-chat.html`)
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'")
    await page.locator("#message").waitFor()
  })

  it("streams a reply and shows the conversation id from the first event before it is done", async () => {
    await open()
    const message = words(40)
    await send(message)
    const final = `Echo #1: ${message}`
    await expect.poll(replyText, { timeout: 20_000 }).toBe(final)
    await expect.poll(status).toBe("ready")
    const id = (await page.textContent("#conversation-id"))!
    expect(id).toMatch(UUID_V4)
    const timeline: Array<{ what: string; replyLength: number }> = await page.evaluate(
      () => (window as any).timeline
    )
    expect(timeline.map((entry) => entry.what)).toEqual([`id ${id}`, "ready"])
    expect(timeline[0]!.replyLength).toBeLessThan(final.length)
    expect((await stored(id)).messages.map((entry) => [entry.role, entry.content, entry.status])).toEqual([
      ["user", message, "complete"],
      ["assistant", final, "complete"]
    ])

    // A reload starts from the stored messages; the finished reply is not replayed a second time.
    await page.reload()
    await expect.poll(() => page.locator("#messages li").allTextContents()).toEqual([message, final])
    expect(await page.getAttribute("#conversation-id", "data-source")).toBe("stored")
    expect(await page.textContent("#conversation-id")).toBe(id)
    expect(await status()).toBe("ready")
  })

  it("resumes a reply still running after page.reload() and ends with all of it", async () => {
    await open()
    const message = words(300)
    const final = `Echo #1: ${message}`
    await send(message)
    await expect.poll(replyText).toContain(" w10 ")
    const id = (await page.textContent("#conversation-id"))!
    expect(id).toMatch(UUID_V4)
    await page.reload()

    // After the reload the page shows the stored user message, learns the
    // conversation id again from the resumed stream's first event, and shows
    // part of the reply while the turn still runs.
    await expect.poll(() => page.getAttribute("#conversation-id", "data-source")).toBe("stream")
    expect(await page.textContent("#conversation-id")).toBe(id)
    await expect.poll(replyText).toContain(" w20 ")
    expect(await page.locator('#messages li[data-role="user"]').allTextContents()).toEqual([message])
    const during = await stored(id)
    expect(during.running_turn).not.toBeNull()
    expect((await replyText()).length).toBeLessThan(final.length)

    await expect.poll(replyText, { timeout: 25_000 }).toBe(final)
    await expect.poll(status).toBe("ready")
    await screenshot(page, "use-chat.png")
    expect(await page.locator("#messages li").allTextContents()).toEqual([message, final])
    const after = await stored(id)
    expect(after.running_turn).toBeNull()
    expect(after.messages.at(-1)).toMatchObject({ role: "assistant", content: final, status: "complete" })
  }, 60_000)

  it("stops a reply: the page keeps what arrived and the server stores it as cancelled", async () => {
    await open()
    await send(words(300))
    await expect.poll(replyText).toContain(" w5 ")
    const id = (await page.textContent("#conversation-id"))!
    await page.click("#stop")
    await expect.poll(status).toBe("ready")
    await expect.poll(() => lastReply().getAttribute("data-state")).toBe("stopped")
    expect(await page.isDisabled("#stop")).toBe(true)
    const shown = await replyText()
    expect(shown.startsWith("Echo #1: w0 w1")).toBe(true)
    await expect
      .poll(async () => (await stored(id)).messages.at(-1)?.status, { timeout: 10_000 })
      .toBe("cancelled")
    const kept = (await stored(id)).messages.at(-1)!.content
    expect(kept.length).toBeLessThan(`Echo #1: ${words(300)}`.length)
  })
})
