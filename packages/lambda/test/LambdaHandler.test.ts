/**
 * `@convoke/lambda` behind a faithful loopback harness of the Lambda runtime:
 * the shared wire contract over Function URL (payload 2.0) and API Gateway
 * REST streaming (payload 1.0), then buffered mode and the container's
 * lifecycle with raw events.
 */
import { describeConformance, StoreProbe } from "@convoke/conformance"
import {
  ApiRouter,
  ChatConfig,
  ChatExtension,
  ChatHttp,
  ChatRateLimit,
  ConversationStore,
  EchoLanguageModel,
  Identity
} from "@convoke/core"
import { TestModel, TestStore } from "@convoke/core/testing"
import { Deferred, Duration, Effect, Layer, Option } from "effect"
import { HttpServerResponse } from "effect/http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { LambdaEvent, LambdaHandler } from "../src/index.ts"
import * as LambdaHarness from "../src/testing/LambdaHarness.ts"

beforeAll(() => LambdaHarness.install())
afterAll(() => LambdaHarness.uninstall())

for (const [name, payload] of [
  ["Function URL (RESPONSE_STREAM, payload 2.0)", "2.0"],
  ["API Gateway REST streaming (payload 1.0)", "1.0"]
] as const) {
  describeConformance(
    `Lambda streaming handler behind a ${name}`,
    async ({ layer }) => {
      const store = await StoreProbe.postgres()
      const app = await ChatHttp.makeApp(Layer.mergeAll(store.layer, layer))
      const served = await LambdaHarness.serve(LambdaHandler.streaming(app), payload)
      return {
        url: served.url,
        probe: store.probe,
        close: async () => {
          await served.close()
          await app.dispose()
          await store.drop()
          expect(served.violations).toEqual([])
        }
      }
    },
    // The runtime hands the handler a whole body, and cannot upgrade to a WebSocket.
    { bufferedBody: true, noUpgrade: true }
  )
}

/** Counts how often the layers are built, to show one build per container. */
const counting = () => {
  const counter = { builds: 0 }
  const layer = Layer.mergeAll(
    ConversationStore.layerMemory,
    EchoLanguageModel.layer({ delay: 0 }),
    // A Function URL's Host is not loopback: anonymous access there must be asked for.
    Identity.layerAnonymous({ hosts: "any" }),
    Layer.effectDiscard(
      Effect.sync(() => {
        counter.builds++
      })
    )
  )
  return { counter, layer }
}

const v2 = (body: string, overrides: Partial<LambdaEvent.EventV2> = {}): LambdaEvent.EventV2 => ({
  version: "2.0",
  rawPath: ChatHttp.CHAT_PATH,
  rawQueryString: "",
  headers: { "content-type": "application/json", host: "abc.lambda-url.eu-west-1.on.aws" },
  requestContext: { http: { method: "POST" } },
  body,
  isBase64Encoded: false,
  ...overrides
})

const v1 = (body: string, overrides: Partial<LambdaEvent.EventV1> = {}): LambdaEvent.EventV1 => ({
  httpMethod: "POST",
  path: ChatHttp.CHAT_PATH,
  headers: { "Content-Type": "application/json" },
  multiValueHeaders: { "Content-Type": ["application/json"] },
  queryStringParameters: null,
  multiValueQueryStringParameters: null,
  body,
  isBase64Encoded: false,
  ...overrides
})

/** Invokes a streaming handler with an event, as the runtime does, and reads the prelude's status. */
const invoke = async (
  handler: ReturnType<typeof LambdaHandler.streaming>,
  event: LambdaEvent.Event
): Promise<{ readonly statusCode: number }> => {
  const chunks: Array<Buffer> = []
  const stream = new LambdaHarness.ResponseStream((chunk, done) => {
    chunks.push(chunk)
    done()
  })
  await handler(event, stream, {})
  const written = Buffer.concat(chunks)
  return JSON.parse(written.subarray(0, written.indexOf(Buffer.alloc(8))).toString("utf8"))
}

describe("LambdaHandler.buffered (API Gateway HTTP API)", () => {
  it("answers payload 2.0 and 1.0 events, base64 bodies included, building the app once for both", async () => {
    const { counter, layer } = counting()
    const handler = LambdaHandler.buffered(layer)
    const first = (await handler(v2(JSON.stringify({ message: "hello" })))) as LambdaEvent.ResultV2
    expect(first.statusCode).toBe(200)
    expect(first.isBase64Encoded).toBe(false)
    expect(first.cookies).toEqual([])
    const completion = JSON.parse(first.body)
    expect(completion.message.content).toBe("Echo #1: hello")
    const base64 = Buffer.from(
      JSON.stringify({ message: "again", conversation_id: completion.conversation_id })
    ).toString("base64")
    const second = (await handler(
      v1(base64, {
        isBase64Encoded: true,
        multiValueHeaders: { "Content-Type": ["text/plain"], "X-Request-Id": ["req-1"] }
      })
    )) as LambdaEvent.ResultV1
    expect(second.statusCode).toBe(200)
    expect(second.headers["x-request-id"]).toBe("req-1")
    expect(second.multiValueHeaders).toEqual({})
    expect(JSON.parse(second.body).message.content).toBe("Echo #2: again")
    expect(counter.builds).toBe(1)
  })

  it("refuses the default anonymous identity behind a Function URL, whose Host is not loopback", async () => {
    const handler = LambdaHandler.buffered(
      Layer.mergeAll(
        ConversationStore.layerMemory,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous()
      )
    )
    const result = await handler(v2(JSON.stringify({ message: "hello" })))
    expect(result.statusCode).toBe(403)
    expect(JSON.parse(result.body)).toMatchObject({ error: { type: "forbidden" } })
  })

  it("buffers a whole SSE stream into one result, metadata first", async () => {
    const handler = LambdaHandler.buffered(counting().layer)
    const result = await handler(v2(JSON.stringify({ message: "hi there", stream: true })))
    expect(result.statusCode).toBe(200)
    expect(result.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
    expect(result.body.startsWith('data: {"type":"metadata","conversation_id":"')).toBe(true)
    expect(result.body.endsWith("data: [DONE]\n\n")).toBe(true)
  })

  it("answers errors before the stream with the common body, and strips a base path", async () => {
    const handler = LambdaHandler.buffered(counting().layer, { basePath: "/prod" })
    const invalid = await handler(v2("{nope", { rawPath: `/prod${ChatHttp.CHAT_PATH}` }))
    expect(invalid.statusCode).toBe(400)
    expect(JSON.parse(invalid.body).error.type).toBe("invalid_request")
    const health = await handler(
      v2("", { rawPath: "/prod/health", requestContext: { http: { method: "GET" } } })
    )
    expect(JSON.parse(health.body)).toMatchObject({ status: "ok" })
    const notHttp = await handler({ hello: "world" } as never)
    expect(notHttp.statusCode).toBe(400)
  })

  it("answers 503 while the app cannot be built, and builds it on a later invocation", async () => {
    let attempts = 0
    let initBuild: Promise<unknown> | undefined
    const handler = LambdaHandler.buffered(() => {
      attempts++
      // The build started at init fails, and so does the first invocation's retry.
      if (attempts <= 2) {
        const failed = Promise.reject(new Error("database unreachable"))
        initBuild ??= failed
        return failed
      }
      return ChatHttp.makeApp(counting().layer)
    })
    // Wait for the init build to fail: the handler forgets it in its own
    // reaction to that failure, registered before this one.
    await initBuild!.catch(() => {})
    const failed = await handler(v2(JSON.stringify({ message: "hi" })))
    expect(failed.statusCode).toBe(503)
    expect(JSON.parse(failed.body).error.type).toBe("unavailable")
    const ok = await handler(v2(JSON.stringify({ message: "hi" })))
    expect(ok.statusCode).toBe(200)
    expect(attempts).toBe(3)
  })
})

describe("LambdaHandler.streaming", () => {
  it("builds the app once per container and reuses it across invocations", async () => {
    const { counter, layer } = counting()
    const served = await LambdaHarness.serve(LambdaHandler.streaming(layer))
    try {
      for (const message of ["one", "two"]) {
        const response = await fetch(`${served.url}${ChatHttp.CHAT_PATH}`, {
          method: "POST",
          body: JSON.stringify({ message, stream: true })
        })
        expect((await response.text()).endsWith("data: [DONE]\n\n")).toBe(true)
      }
      expect(served.invocations()).toBe(2)
      expect(counter.builds).toBe(1)
      expect(served.violations).toEqual([])
    } finally {
      await served.close()
    }
  })

  it("keeps the invocation running while a turn whose client left goes on, until the grace window ends it", async () => {
    const store = TestStore.make()
    const model = TestModel.make(() => TestModel.endless("Hel", "lo"))
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        store.layer,
        model.layer,
        Identity.layerAnonymous({ hosts: "any" }),
        Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make({ disconnectGrace: Duration.millis(100) }))
      )
    )
    try {
      let text = ""
      const stream: LambdaHarness.ResponseStream = new LambdaHarness.ResponseStream((chunk, done) => {
        text += chunk.toString("utf8")
        done()
        // The client leaves once it has the whole reply so far.
        if (text.includes('"content":"lo"')) stream.destroy(new Error("The client closed the connection"))
      })
      stream.on("error", () => {})
      await LambdaHandler.streaming(app)(v2(JSON.stringify({ message: "hi", stream: true })), stream, {})
      // The invocation returned only once the turn ended: cancelled when the window closed, its reply stored.
      expect(Effect.runSync(Deferred.isDone(model.interrupted))).toBe(true)
      const stored = await Effect.runPromise(Deferred.await(store.assistantStored))
      expect([stored.status, stored.content]).toEqual(["cancelled", "Hello"])
    } finally {
      await app.dispose()
    }
  })

  it("writes the prelude of a response with no body, cookies apart, and ends the stream", async () => {
    const empty = ApiRouter.route(
      "GET",
      "/empty",
      Effect.succeed(
        HttpServerResponse.empty({ status: 204, headers: { "x-served": "natively" } }).pipe(
          HttpServerResponse.setCookieUnsafe("a", "1")
        )
      )
    )
    const app = await ChatHttp.makeApp(
      Layer.merge(counting().layer, ChatExtension.layer({ routes: [empty] }))
    )
    const served = await LambdaHarness.serve(LambdaHandler.streaming(app))
    try {
      const response = await fetch(`${served.url}/empty`)
      expect(response.status).toBe(204)
      expect(response.headers.get("x-served")).toBe("natively")
      expect(response.headers.getSetCookie()).toEqual(["a=1"])
      expect(served.violations).toEqual([])
    } finally {
      await served.close()
      await app.dispose()
    }
  })

  it("answers an event that names no valid URL with a 400", async () => {
    const app = await ChatHttp.makeApp(counting().layer)
    try {
      const result = await invoke(LambdaHandler.streaming(app), v2("{}", { headers: { host: "bad host" } }))
      expect(result.statusCode).toBe(400)
    } finally {
      await app.dispose()
    }
  })

  it("counts anonymous callers by their source IP", async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        ConversationStore.layerMemory,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous({ hosts: "any" }),
        ChatRateLimit.layerMemory({ address: { limit: 1, window: "1 minute" } })
      )
    )
    try {
      const handler = LambdaHandler.streaming(app)
      const from = (sourceIp: string) =>
        v2(JSON.stringify({ message: "hi", stream: true }), {
          requestContext: { http: { method: "POST", sourceIp } }
        })
      expect((await invoke(handler, from("10.0.0.1"))).statusCode).toBe(200)
      expect((await invoke(handler, from("10.0.0.1"))).statusCode).toBe(429)
      expect((await invoke(handler, from("10.0.0.2"))).statusCode).toBe(200)
    } finally {
      await app.dispose()
    }
  })

  it("explains itself outside the Lambda runtime", () => {
    LambdaHarness.uninstall()
    try {
      expect(() => LambdaHandler.streaming(counting().layer)).toThrow(/awslambda/)
    } finally {
      LambdaHarness.install()
    }
  })
})

describe("LambdaEvent.toServerRequest", () => {
  it("carries payload 2.0 headers, cookies, query, a base64 body and the source IP", async () => {
    const request = LambdaEvent.toServerRequest(
      v2(Buffer.from("binary\u0000body").toString("base64"), {
        rawPath: `/prod${ChatHttp.CHAT_PATH}`,
        rawQueryString: "a=1&a=2",
        cookies: ["session=abc", "theme=dark"],
        isBase64Encoded: true,
        requestContext: { http: { method: "POST", sourceIp: "203.0.113.7" } }
      }),
      { basePath: "/prod" }
    )
    expect(request.method).toBe("POST")
    expect(request.url).toBe(`${ChatHttp.CHAT_PATH}?a=1&a=2`)
    expect(request.headers.cookie).toBe("session=abc; theme=dark")
    expect(request.headers["content-type"]).toBe("application/json")
    expect(Option.getOrUndefined(request.remoteAddress)).toBe("203.0.113.7")
    expect(await Effect.runPromise(request.text)).toBe("binary\u0000body")
  })

  it("joins payload 1.0 multi-value headers, drops the declared length and adds no content type", async () => {
    const request = LambdaEvent.toServerRequest(
      v1("{}", {
        headers: null,
        multiValueHeaders: { Accept: ["text/html", "application/json"], "Content-Length": ["999"] },
        requestContext: { domainName: "api.example.com", identity: { sourceIp: "198.51.100.1" } }
      })
    )
    expect(request.headers.accept).toBe("text/html, application/json")
    expect(request.headers["content-length"]).toBe("2")
    expect(request.headers["content-type"]).toBeUndefined()
    expect(Option.getOrUndefined(request.remoteAddress)).toBe("198.51.100.1")
  })

  it("throws on an event with no valid URL", () => {
    expect(() => LambdaEvent.toServerRequest(v2("{}", { headers: { host: "bad host" } }))).toThrow()
    // A Host that would carry a path, query, fragment or credentials into the URL is no host.
    for (const host of ["evil.example/x", "evil.example?x", "evil.example#x", "user@evil.example"])
      expect(() => LambdaEvent.toServerRequest(v2("{}", { headers: { host } })), host).toThrow()
  })

  it("reads a path that starts with // or /\\ as a path on this host, never as another host", () => {
    for (const rawPath of [`//evil.example${ChatHttp.CHAT_PATH}`, `/\\evil.example${ChatHttp.CHAT_PATH}`]) {
      for (const event of [v2("{}", { rawPath, rawQueryString: "a=1" }), v1("{}", { path: rawPath })]) {
        const request = LambdaEvent.toServerRequest(event)
        expect(request.url, rawPath).not.toBe(ChatHttp.CHAT_PATH)
        expect(request.url.startsWith("//"), rawPath).toBe(true)
        expect(request.url, rawPath).toContain("evil.example")
      }
    }
  })
})

describe("the SAM example", () => {
  it("serves the wire contract from its streaming handler, configured by environment", async () => {
    const store = await StoreProbe.postgres()
    process.env.DATABASE_URL = store.url
    process.env.CONVOKE_API_KEYS = "example-key-0123456789-abcdefghijklmnopqrstuvwxyz:alice"
    process.env.CONVOKE_MAX_BODY_BYTES = "300"
    const { handler } = await import("../examples/sam/streaming.ts")
    const served = await LambdaHarness.serve(handler)
    try {
      const unauthenticated = await fetch(`${served.url}${ChatHttp.CHAT_PATH}`, {
        method: "POST",
        body: "{}"
      })
      expect(unauthenticated.status).toBe(401)
      // The core's variables reach the example: a body past CONVOKE_MAX_BODY_BYTES is a 413.
      const large = await fetch(`${served.url}${ChatHttp.CHAT_PATH}`, {
        method: "POST",
        headers: { "x-api-key": "example-key-0123456789-abcdefghijklmnopqrstuvwxyz" },
        body: JSON.stringify({ message: "x".repeat(400) })
      })
      expect(large.status).toBe(413)
      const response = await fetch(`${served.url}${ChatHttp.CHAT_PATH}`, {
        method: "POST",
        headers: { "x-api-key": "example-key-0123456789-abcdefghijklmnopqrstuvwxyz" },
        body: JSON.stringify({ message: "Hello", stream: true })
      })
      const reader = response.body!.getReader()
      const first = new TextDecoder().decode((await reader.read()).value)
      const { conversation_id } = JSON.parse(first.slice(6))
      while (!(await reader.read()).done) {}
      expect(await store.probe.transcript(conversation_id)).toEqual([
        ["user", "complete", "Hello"],
        ["assistant", "complete", "Echo #1: Hello"]
      ])
    } finally {
      await served.close()
      await store.drop()
      delete process.env.DATABASE_URL
      delete process.env.CONVOKE_API_KEYS
      delete process.env.CONVOKE_MAX_BODY_BYTES
    }
  })
})
