/**
 * `@convoke/fastify` registered under a prefix in an app that has
 * `@fastify/compress` and routes of its own: the shared wire contract, then
 * what is Fastify's own (encapsulation, its logger, hooks' headers, close).
 */
import { Writable } from "node:stream"
import { gzipSync } from "node:zlib"
import { type Conformance, describeConformance, StoreProbe } from "@convoke/conformance"
import { ChatHttp, ConversationStore, EchoLanguageModel, Identity } from "@convoke/core"
import compress from "@fastify/compress"
import { Effect, Layer } from "effect"
import Fastify, { type FastifyInstance } from "fastify"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { FastifyPlugin } from "../src/index.ts"

/**
 * A Fastify app with compression, its own JSON route and Convoke under
 * `/convoke`; with `fallback`, its own not-found handler answers that.
 */
const makeFastifyApp = async (
  options: FastifyPlugin.Options,
  logs?: Writable,
  fallback?: Conformance.ApplicationFallback
) => {
  const fastify = Fastify(logs ? { logger: { level: "info", stream: logs } } : {})
  if (fallback !== undefined) {
    fastify.setNotFoundHandler((_request, reply) =>
      reply.code(fallback.status).type("application/json").send(fallback.body)
    )
  }
  await fastify.register(compress, { global: true, threshold: 64 })
  fastify.post("/own", async (request) => ({ own: request.body }))
  fastify.addHook("onRequest", async (_request, reply) => {
    reply.header("x-app-hook", "yes")
  })
  await fastify.register(FastifyPlugin.plugin, { ...options, prefix: "/convoke" })
  await fastify.listen({ port: 0, host: "127.0.0.1" })
  const { port } = fastify.server.address() as { port: number }
  return { fastify, url: `http://127.0.0.1:${port}` }
}

/** What the conformance app's own not-found handler answers. */
const FALLBACK: Conformance.ApplicationFallback = {
  status: 404,
  body: '{"answered_by":"the Fastify application\'s own not-found handler"}'
}

describeConformance("Fastify 5 with @fastify/compress, registered at /convoke", async ({ layer }) => {
  const store = await StoreProbe.postgres()
  const { fastify, url } = await makeFastifyApp(
    { layer: Layer.mergeAll(store.layer, layer) },
    undefined,
    FALLBACK
  )
  return {
    url: `${url}/convoke`,
    probe: store.probe,
    applicationFallback: FALLBACK,
    close: async () => {
      await fastify.close()
      await store.drop()
    }
  }
})

describe("FastifyPlugin inside a Fastify app", () => {
  let fastify: FastifyInstance
  let url: string
  const lines: Array<Record<string, any>> = []
  let builds = 0
  let disposed = false
  beforeAll(async () => {
    const logs = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line))
        done()
      }
    })
    const counted = Layer.effectDiscard(
      Effect.acquireRelease(
        Effect.sync(() => {
          builds++
        }),
        () =>
          Effect.sync(() => {
            disposed = true
          })
      )
    )
    ;({ fastify, url } = await makeFastifyApp(
      {
        layer: Layer.mergeAll(
          ConversationStore.layerMemory,
          EchoLanguageModel.layer({ delay: 0 }),
          Identity.layerAnonymous(),
          counted
        )
      },
      logs
    ))
  })
  afterAll(async () => {
    await fastify?.close()
  })

  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body
    })

  it("keeps the app's JSON parser and compression for its own routes, and its hooks' headers on Convoke's", async () => {
    const own = await post("/own", JSON.stringify({ text: "x".repeat(256) }))
    expect(own.headers.get("content-encoding")).toBe("gzip")
    expect((await own.json()).own.text).toHaveLength(256)
    const stream = await post(
      `/convoke${ChatHttp.CHAT_PATH}`,
      JSON.stringify({ message: "hi", stream: true })
    )
    expect(stream.headers.get("x-app-hook")).toBe("yes")
    expect(stream.headers.get("content-encoding")).toBeNull()
    expect((await stream.text()).endsWith("data: [DONE]\n\n")).toBe(true)
    const health = await fetch(`${url}/convoke/health`)
    expect(await health.json()).toEqual({ status: "ok" })
    // Nothing of Convoke's is served outside its prefix.
    expect((await fetch(`${url}${ChatHttp.CHAT_PATH}`, { method: "POST", body: "{}" })).status).toBe(404)
  })

  it("reads request bodies after Fastify's preParsing hooks (a gzip-encoded request)", async () => {
    const response = await fetch(`${url}/convoke${ChatHttp.CHAT_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify({ message: "compressed" }))
    })
    expect(response.status).toBe(200)
    expect((await response.json()).message.content).toBe("Echo #1: compressed")
  })

  it("logs through Fastify's logger", async () => {
    await post(
      `/convoke${ChatHttp.CHAT_PATH}`,
      JSON.stringify({ message: "hi", stream: true, conversation_id: "not-a-uuid" })
    ).then((response) => response.text())
    expect(lines.some((line) => /Malformed conversation_id/.test(line.msg))).toBe(true)
  })

  it("builds the app once at registration and releases it when Fastify closes", async () => {
    expect(builds).toBe(1)
    await post(`/convoke${ChatHttp.CHAT_PATH}`, JSON.stringify({ message: "again" }))
    expect(builds).toBe(1)
    expect(disposed).toBe(false)
    await fastify.close()
    expect(disposed).toBe(true)
  })
})

describe("FastifyPlugin on fastify.close()", () => {
  it("ends an open stream with a shutdown error event and [DONE] before the server stops", async () => {
    const { fastify, url } = await makeFastifyApp({
      layer: Layer.mergeAll(
        ConversationStore.layerMemory,
        EchoLanguageModel.layer({ delay: 50 }),
        Identity.layerAnonymous()
      )
    })
    const response = await fetch(`${url}/convoke${ChatHttp.CHAT_PATH}`, {
      method: "POST",
      body: JSON.stringify({ message: Array.from({ length: 100 }, () => "word").join(" "), stream: true })
    })
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let body = decoder.decode((await reader.read()).value)
    expect(body.startsWith('data: {"type":"metadata"')).toBe(true)
    const closed = fastify.close()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      body += decoder.decode(value, { stream: true })
    }
    await closed
    const frames = body
      .split("\n\n")
      .filter(Boolean)
      .map((frame) => frame.replace(/^id: [^\n]*\n/, ""))
    expect(frames.at(-1)).toBe("data: [DONE]")
    expect(JSON.parse(frames.at(-2)!.slice(6))).toMatchObject({ type: "error", error: { type: "shutdown" } })
  })
})
