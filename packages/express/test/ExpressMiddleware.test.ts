/**
 * `@convoke/express` in an app that already has `compression`, `express.json()`
 * and routes of its own: the shared wire contract, then what is Express's own.
 */
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"
import { type Conformance, describeConformance, StoreProbe } from "@convoke/conformance"
import { ChatHttp, ConversationStore, EchoLanguageModel, Identity } from "@convoke/core"
import compression from "compression"
import { Layer } from "effect"
import express from "express"
// Express 4 under another name, to check the middleware against both majors.
// @ts-expect-error: the alias has no type declarations; Express 5's are used below.
import express4Untyped from "express4"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ExpressMiddleware } from "../src/index.ts"

const express4 = express4Untyped as typeof express

/** An app with the usual middleware in front and its own routes beside Convoke's mount. */
const makeExpressApp = (
  source: ChatHttp.App,
  json: Parameters<typeof express.json>[0] = {},
  framework: typeof express = express
) => {
  const app = framework()
  app.use(compression())
  app.use(framework.json(json))
  app.get("/chat/own-route", (_request, response) => {
    response.json({ own: true })
  })
  app.use("/chat", ExpressMiddleware.make(source))
  app.get("/hello", (_request, response) => {
    response.json({ hello: "x".repeat(4096) })
  })
  return app
}

const listen = async (app: express.Express) => {
  const server: Server = await new Promise((resolve) => {
    const started = app.listen(0, "127.0.0.1", () => resolve(started))
  })
  const stop = async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stop, server }
}

/** What the conformance apps answer, as their own last handler, for a path nobody serves. */
const FALLBACK: Conformance.ApplicationFallback = {
  status: 404,
  body: '{"answered_by":"the Express application\'s own fallback"}'
}

for (const [name, framework] of [
  ["Express 5", express],
  ["Express 4", express4]
] as const) {
  describeConformance(`${name} with compression and express.json(), mounted at /chat`, async ({ layer }) => {
    const store = await StoreProbe.postgres()
    const app = await ChatHttp.makeApp(Layer.mergeAll(store.layer, layer))
    const application = makeExpressApp(app, {}, framework)
    // Last: reached only by what neither Convoke nor the app's routes answered.
    application.use((_request, response) => {
      response.status(FALLBACK.status).type("application/json").send(FALLBACK.body)
    })
    const { url, stop, server } = await listen(application)
    ExpressMiddleware.attachWebSocket(server, app, { prefix: "/chat" })
    return {
      url: `${url}/chat`,
      probe: store.probe,
      applicationFallback: FALLBACK,
      close: async () => {
        await stop()
        await app.dispose()
        await store.drop()
      }
    }
  })
}

describe("ExpressMiddleware beside the app's own routes and middleware", () => {
  let app: ChatHttp.App
  let served: Awaited<ReturnType<typeof listen>>
  beforeAll(async () => {
    app = await ChatHttp.makeApp(
      Layer.mergeAll(
        ConversationStore.layerMemory,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous()
      )
    )
    served = await listen(makeExpressApp(app, { limit: "1kb" }))
  })
  afterAll(async () => {
    await served?.stop()
    await app?.dispose()
  })

  it("leaves the app's other routes, under the prefix and outside it, to the app", async () => {
    expect(await (await fetch(`${served.url}/chat/own-route`)).json()).toEqual({ own: true })
    const hello = await fetch(`${served.url}/hello`)
    // compression is really installed: the app's own large JSON is compressed…
    expect(hello.headers.get("content-encoding")).toBe("gzip")
    expect((await hello.json()).hello).toHaveLength(4096)
    // …and a path Convoke does not serve reaches Express's own 404, not Convoke's.
    const unknown = await fetch(`${served.url}/chat/unknown`)
    expect(unknown.status).toBe(404)
    expect(unknown.headers.get("content-type")).toMatch(/^text\/html/)
    expect((await fetch(`${served.url}/chat/health`)).status).toBe(200)
  })

  it("answers express.json()'s own failures on Convoke's paths with the common error body", async () => {
    const post = (body: string) =>
      fetch(`${served.url}/chat${ChatHttp.CHAT_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body
      })
    const tooLarge = await post(JSON.stringify({ message: "x".repeat(2048) }))
    expect(tooLarge.status).toBe(413)
    expect(await tooLarge.json()).toEqual({
      error: { type: "request_too_large", message: expect.any(String) }
    })
    const malformed = await post("{nope")
    expect(malformed.status).toBe(400)
    expect(await malformed.json()).toEqual({
      error: { type: "invalid_request", message: expect.any(String) }
    })
    // The parsed body reaches the core unchanged.
    const ok = await post(JSON.stringify({ message: "parsed by express" }))
    expect((await ok.json()).message.content).toBe("Echo #1: parsed by express")
  })

  it("leaves SSE uncompressed when the client accepts gzip", async () => {
    const response = await fetch(`${served.url}/chat${ChatHttp.CHAT_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json", "accept-encoding": "gzip" },
      body: JSON.stringify({ message: "hi", stream: true })
    })
    // SSE carries no-transform: compression must leave it alone.
    expect(response.headers.get("content-encoding")).toBeNull()
    const text = await response.text()
    expect(text.startsWith('data: {"type":"metadata"')).toBe(true)
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true)
  })
})
