import { createServer, type IncomingMessage, type Server } from "node:http"
import { type AddressInfo, connect } from "node:net"
import { Readable, Writable } from "node:stream"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer, Stream } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import { ApiRouter, ChatConfig, ChatExtension, ChatHttp, EchoLanguageModel, Identity } from "../src/index.ts"
import { NodeHandler } from "../src/node.ts"
import * as Sse from "../src/testing/Sse.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"

interface Served {
  readonly url: string
  readonly server: Server
}

const listen = async (handler: Parameters<typeof createServer>[1]): Promise<Server> => {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return server
}

const close = async (server: Server) => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

/** Turns whose client leaves are cancelled at once. */
const noGrace = Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make({ disconnectGrace: Duration.zero }))

/** Serves the app built from `layer` on a loopback port for the duration of `body`. */
const withServer = async <A>(layer: Layer.Layer<any, never, never>, body: (served: Served) => Promise<A>) => {
  const app = await ChatHttp.makeApp(layer)
  const server = await listen(NodeHandler.toNodeHandler(app))
  try {
    const { port } = server.address() as AddressInfo
    return await body({ url: `http://127.0.0.1:${port}`, server })
  } finally {
    await close(server)
    await app.dispose()
  }
}

const chat = (served: Served, body: unknown, init: RequestInit = {}) =>
  fetch(`${served.url}/api/v0.3/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init
  })

const METADATA_FRAME =
  /^data: \{"type":"metadata","conversation_id":"[0-9a-f-]{36}","model":"unified-chat","timestamp":\d+,"turn_id":"[0-9a-f-]{36}"\}\n\n$/

const METADATA_PREFIX = new RegExp(METADATA_FRAME.source.slice(0, -1))

const await_ = <A, E>(deferred: Deferred.Deferred<A, E>) => Effect.runPromise(Deferred.await(deferred))

describe("NodeHandler over node:http", () => {
  it("the first chunk a fetch reader reads is exactly the metadata event", async () => {
    const gate = Deferred.makeUnsafe<void>()
    const model = TestModel.make(() => TestModel.gated(gate, TestModel.reply("Hel", "lo")))
    await withServer(
      Layer.mergeAll(TestStore.make().layer, model.layer, Identity.layerAnonymous()),
      async (served) => {
        const response = await chat(served, { message: "hi", stream: true })
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.headers.get("content-type"), "text/event-stream; charset=utf-8")
        assert.strictEqual(response.headers.get("cache-control"), "no-cache, no-transform")
        assert.strictEqual(response.headers.get("x-accel-buffering"), "no")
        const reader = response.body!.getReader()
        // The model is held back until this read returns: the metadata cannot wait for content.
        const first = await reader.read()
        assert.isFalse(first.done)
        assert.match(new TextDecoder().decode(first.value), METADATA_FRAME)
        assert.strictEqual(model.pulled(), 0)
        Deferred.doneUnsafe(gate, Effect.void)
        let rest = ""
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          rest += new TextDecoder().decode(value)
        }
        assert.deepStrictEqual(Sse.frames(rest).map(Sse.withoutId), [
          'data: {"type":"content","delta":{"content":"Hel"}}',
          'data: {"type":"content","delta":{"content":"lo"}}',
          "data: [DONE]"
        ])
      }
    )
  })

  it("writes a streamed response that carries no producer chunk by chunk", async () => {
    const encoder = new TextEncoder()
    const route = ApiRouter.route(
      "GET",
      "/chunks",
      Effect.succeed(
        HttpServerResponse.stream(
          Stream.make("one ", "two ", "three").pipe(Stream.map((text) => encoder.encode(text)))
        )
      )
    )
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      TestModel.make(() => TestModel.reply("x")).layer,
      Identity.layerAnonymous(),
      ChatExtension.layer({ routes: [route] })
    )
    await withServer(layer, async (served) => {
      const response = await fetch(`${served.url}/chunks`)
      assert.strictEqual(await response.text(), "one two three")
    })
  })

  it("serves the non-streaming reply and the error bodies", async () => {
    await withServer(
      Layer.mergeAll(
        TestStore.make().layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous()
      ),
      async (served) => {
        const ok = await chat(served, { message: "hi" })
        assert.strictEqual(ok.status, 200)
        assert.strictEqual((await ok.json()).message.content, "Echo #1: hi")
        const missing = await chat(served, {
          message: "hi",
          conversation_id: "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d"
        })
        assert.strictEqual(missing.status, 404)
        assert.deepStrictEqual(await missing.json(), {
          error: { type: "not_found", message: "Conversation not found" }
        })
        const tooLarge = await chat(served, { message: "x".repeat(40 * 1024) })
        assert.strictEqual(tooLarge.status, 413)
        assert.strictEqual((await tooLarge.json()).error.type, "request_too_large")
      }
    )
  })

  it("with no grace window, a client abort after the metadata event cancels the turn and stores the partial reply", async () => {
    const store = TestStore.make()
    const model = TestModel.make(() => TestModel.endless("Hel", "lo"))
    await withServer(
      Layer.mergeAll(store.layer, model.layer, Identity.layerAnonymous("alice"), noGrace),
      async (served) => {
        const controller = new AbortController()
        const response = await chat(served, { message: "hi", stream: true }, { signal: controller.signal })
        const reader = Sse.reader(response.body!)
        const id = Sse.data((await reader.next())!).conversation_id
        assert.strictEqual(Sse.data((await reader.next())!).delta.content, "Hel")
        assert.strictEqual(Sse.data((await reader.next())!).delta.content, "lo")
        controller.abort()
        await reader.cancel().catch(() => {})
        // The model's stream is interrupted (it would never end by itself) and the reply is kept.
        await await_(model.interrupted)
        const stored = await await_(store.assistantStored)
        assert.strictEqual(stored.status, "cancelled")
        assert.deepStrictEqual(await Effect.runPromise(TestStore.transcript(store.service, "alice", id)), [
          ["user", "complete", "hi"],
          ["assistant", "cancelled", "Hello"]
        ])
      }
    )
  })

  it("a slow reader holds the model back instead of growing server memory", async () => {
    const DELTA = "x".repeat(1 << 20) // 1 MiB per delta
    const BOUND = 64 // far above what socket and stream buffers hold, far below "unbounded"
    const model = TestModel.make(() => TestModel.forever(DELTA))
    await withServer(
      Layer.mergeAll(TestStore.make().layer, model.layer, Identity.layerAnonymous(), noGrace),
      async (served) => {
        const controller = new AbortController()
        const response = await chat(served, { message: "hi", stream: true }, { signal: controller.signal })
        const reader = response.body!.getReader()
        // The model answers at once here, so its first delta may share the
        // metadata event's TCP segment.
        assert.match(new TextDecoder().decode((await reader.read()).value), METADATA_PREFIX)
        // Read nothing more. Production must come to a halt at a bounded count.
        let last = -1
        let unchangedPolls = 0
        while (unchangedPolls < 10) {
          await new Promise((resolve) => setTimeout(resolve, 20))
          const pulled = model.pulled()
          assert.isAtMost(pulled, BOUND, "the model kept being pulled while nobody read")
          unchangedPolls = pulled === last ? unchangedPolls + 1 : 0
          last = pulled
        }
        assert.isAtLeast(last, 1)
        // It was back-pressure, not the end: reading again lets the model continue.
        let read = 0
        while (model.pulled() <= last) {
          const { done, value } = await reader.read()
          assert.isFalse(done)
          read += value!.byteLength
          assert.isAtMost(read, (BOUND + 4) * DELTA.length * 1.1, "reading did not resume the model")
        }
        controller.abort()
        await reader.cancel().catch(() => {})
        await await_(model.interrupted)
      }
    )
  })
})

/** A route that answers with the content type and the body the core read. */
const echoRoute = ApiRouter.route(
  "POST",
  "/echo",
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    return HttpServerResponse.text(`${request.headers["content-type"]} ${yield* request.text}`)
  })
)

describe("NodeHandler.toNodeHandler", () => {
  const makeHandler = async (options: NodeHandler.NodeHandlerOptions = {}) => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        TestStore.make().layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous(),
        ChatExtension.layer({ routes: [echoRoute] })
      )
    )
    return { handle: NodeHandler.toNodeHandler(app, options), dispose: app.dispose }
  }

  /** Serves the echo, after `prepare` ran on the request; `given` is a body stream a framework hands on. */
  const echoBody = async (
    prepare: (request: IncomingMessage) => Promise<void> | void,
    options: NodeHandler.NodeHandlerOptions = {},
    given?: () => Readable
  ) => {
    const { handle, dispose } = await makeHandler(options)
    const server = await listen(async (request, response) => {
      await prepare(request)
      await handle(request, response, given?.())
    })
    try {
      const { port } = server.address() as AddressInfo
      const response = await fetch(`http://127.0.0.1:${port}/echo`, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: '{"message":"raw"}'
      })
      return await response.text()
    } finally {
      await close(server)
      await dispose()
    }
  }

  it("reads the raw body when a framework set request.body without reading the stream (Express 4)", async () => {
    const seen = await echoBody((request) => {
      ;(request as { body?: unknown }).body = {}
    })
    assert.strictEqual(seen, 'text/plain {"message":"raw"}')
  })

  it("re-serialises request.body when a framework read the stream to parse it", async () => {
    const seen = await echoBody(async (request) => {
      let text = ""
      for await (const chunk of request) text += chunk
      ;(request as { body?: unknown }).body = { ...JSON.parse(text), parsed: true }
    })
    assert.strictEqual(seen, 'application/json {"message":"raw","parsed":true}')
  })

  it("reads the body from the stream a framework hands on", async () => {
    const seen = await echoBody(
      () => {},
      {},
      () => Readable.from([Buffer.from('{"message":"given"}')])
    )
    assert.strictEqual(seen, 'text/plain {"message":"given"}')
  })

  it("serves the path a framework gives, without its mount prefix", async () => {
    const seen = await echoBody(
      (request) => {
        request.url = `/mounted${request.url}`
      },
      { url: (request) => request.url?.slice("/mounted".length) }
    )
    assert.strictEqual(seen, 'text/plain {"message":"raw"}')
  })

  /** The chat app on a loopback port, served the way this suite serves. */
  const serveChat = async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(TestStore.make().layer, EchoLanguageModel.layer({ delay: 0 }), Identity.layerAnonymous())
    )
    const server = await listen(NodeHandler.toNodeHandler(app))
    return { app, server, port: (server.address() as AddressInfo).port }
  }

  it("answers a body declared over the limit with 413 before reading it, and one within it normally", async () => {
    const { app, server, port } = await serveChat()
    try {
      const post = (message: string) =>
        fetch(`http://127.0.0.1:${port}/api/v0.3/chat`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ message })
        })
      // The default limit is 32 KiB; `{"message":""}` is 14 bytes.
      const over = await post("x".repeat(32 * 1024))
      assert.strictEqual(over.status, 413)
      assert.strictEqual((await over.json()).error.type, "request_too_large")
      const within = await post("x".repeat(1000))
      assert.strictEqual(within.status, 200)
      assert.strictEqual((await within.json()).message.content, `Echo #1: ${"x".repeat(1000)}`)
    } finally {
      await close(server)
      await app.dispose()
    }
  })

  it("closes the connection when it answers before the whole body arrived, so server.close() completes", async () => {
    const { app, server, port } = await serveChat()
    try {
      const body = JSON.stringify({ message: "x".repeat(2_000_000) })
      // Sent chunked, so the core reads up to its limit and stops there.
      const response = await fetch(`http://127.0.0.1:${port}/api/v0.3/chat`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: Readable.toWeb(Readable.from([Buffer.from(body)])) as ReadableStream,
        duplex: "half"
      } as RequestInit)
      assert.strictEqual(response.status, 413)
      assert.strictEqual(response.headers.get("connection"), "close")
      await response.text()
      // A half-read connection would keep this from ever resolving.
      server.closeIdleConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    } finally {
      server.closeAllConnections()
      await app.dispose()
    }
  })
})

describe("NodeHandler.writeError and failures", () => {
  it("writeError writes the common body with the core's type for the status", async () => {
    const server = await listen((_request, response) => NodeHandler.writeError(response, 413, "Too big"))
    try {
      const { port } = server.address() as AddressInfo
      const response = await fetch(`http://127.0.0.1:${port}/`)
      assert.strictEqual(response.status, 413)
      assert.deepStrictEqual(await response.json(), {
        error: { type: "request_too_large", message: "Too big" }
      })
    } finally {
      await close(server)
    }
  })

  it("writeError before the body was read closes the connection instead of leaving it half-read", async () => {
    const server = await listen((_request, response) => NodeHandler.writeError(response, 413, "Too big"))
    try {
      const { port } = server.address() as AddressInfo
      const response = await fetch(`http://127.0.0.1:${port}/`, {
        method: "POST",
        body: Readable.toWeb(Readable.from([Buffer.alloc(2_000_000)])) as ReadableStream,
        duplex: "half"
      } as RequestInit)
      assert.strictEqual(response.status, 413)
      assert.strictEqual(response.headers.get("connection"), "close")
    } finally {
      await close(server)
    }
  })

  it("a defect in a route becomes a 500 with the common body", async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        TestStore.make().layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous(),
        ChatExtension.layer({ routes: [ApiRouter.route("GET", "/boom", Effect.die(new Error("boom")))] })
      )
    )
    const server = await listen(NodeHandler.toNodeHandler(app))
    try {
      const { port } = server.address() as AddressInfo
      const response = await fetch(`http://127.0.0.1:${port}/boom`)
      assert.strictEqual(response.status, 500)
      assert.deepStrictEqual(await response.json(), {
        error: { type: "internal", message: "Internal server error" }
      })
    } finally {
      await close(server)
      await app.dispose()
    }
  })

  it("writes a response's status, headers, cookies and streamed body", async () => {
    const encoder = new TextEncoder()
    const route = ApiRouter.route(
      "GET",
      "/created",
      Effect.succeed(
        HttpServerResponse.stream(Stream.make("a", "b").pipe(Stream.map((text) => encoder.encode(text))), {
          status: 201,
          headers: { "x-one": "1" }
        }).pipe(HttpServerResponse.setCookieUnsafe("a", "1"), HttpServerResponse.setCookieUnsafe("b", "2"))
      )
    )
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        TestStore.make().layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous(),
        ChatExtension.layer({ routes: [route] })
      )
    )
    const server = await listen(NodeHandler.toNodeHandler(app))
    try {
      const { port } = server.address() as AddressInfo
      const response = await fetch(`http://127.0.0.1:${port}/created`)
      assert.strictEqual(response.status, 201)
      assert.strictEqual(response.headers.get("x-one"), "1")
      assert.deepStrictEqual(response.headers.getSetCookie(), ["a=1", "b=2"])
      assert.strictEqual(await response.text(), "ab")
    } finally {
      await close(server)
      await app.dispose()
    }
  })
})

describe("NodeHandler request heads", () => {
  const exchange = (port: number, message: string) =>
    new Promise<string>((resolve) => {
      const socket = connect(port, "127.0.0.1")
      let received = ""
      socket.on("data", (chunk) => {
        received += chunk
      })
      socket.on("close", () => resolve(received))
      socket.on("error", () => {})
      socket.end(message)
    })
  const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))

  it("reads a target starting with // as a path on this host, never as another host", () =>
    withServer(
      Layer.mergeAll(TestStore.make().layer, EchoLanguageModel.layer(), Identity.layerAnonymous()),
      async (served) => {
        const port = Number(new URL(served.url).port)
        for (const target of ["//:///", "//evil.example/api/v0.3/chat", "//"]) {
          const answer = await exchange(
            port,
            `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`
          )
          assert.match(answer, /^HTTP\/1\.1 404 /, target)
          assert.strictEqual(bodyOf(answer).error.type, "not_found")
        }
      }
    ))

  it("answers oversized and malformed heads with the common error body through onClientError", async () => {
    const server = createServer({ maxHeaderSize: 1024 }, (_, response) => response.end("ok"))
    server.on("clientError", NodeHandler.onClientError)
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const { port } = server.address() as AddressInfo
      const big = await exchange(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2000)}\r\n\r\n`)
      assert.match(big, /^HTTP\/1\.1 431 /)
      assert.strictEqual(bodyOf(big).error.type, "request_header_fields_too_large")
      const bad = await exchange(port, "NOT A REQUEST\r\n\r\n")
      assert.match(bad, /^HTTP\/1\.1 400 /)
      assert.strictEqual(bodyOf(bad).error.type, "invalid_request")
    } finally {
      await close(server)
    }
  })
})

describe("NodeHandler.makeServe to any Writable", () => {
  /** A destination that records the head and the body's chunks. */
  const recording = () => {
    const chunks: Array<string> = []
    const waiting: Array<{ readonly count: number; readonly resolve: () => void }> = []
    let head: { readonly status: number; readonly headers: Record<string, unknown> } | undefined
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk.toString("utf8"))
        for (const waiter of waiting) if (chunks.length >= waiter.count) waiter.resolve()
        done()
      }
    })
    /** Resolves once `count` chunks were written. */
    const received = (count: number) => new Promise<void>((resolve) => waiting.push({ count, resolve }))
    const destination: NodeHandler.Destination = {
      stream,
      start: (status, headers) => {
        head = { status, headers }
        return stream
      }
    }
    return { destination, stream, chunks, received, head: () => head }
  }

  const chatRequest = (message: string) =>
    HttpServerRequest.fromWeb(
      new Request("http://localhost/api/v0.3/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ message, stream: true })
      })
    )

  it("a destination that finishes ending later (compression middleware) keeps its whole body", async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(TestStore.make().layer, EchoLanguageModel.layer({ delay: 0 }), Identity.layerAnonymous())
    )
    try {
      const target = recording()
      // As `compression` does: `end` hands the body to zlib and the stream ends a tick later.
      const end = target.stream.end.bind(target.stream)
      target.stream.end = ((chunk?: Uint8Array) => {
        setImmediate(() => end(chunk))
        return target.stream
      }) as typeof target.stream.end
      await NodeHandler.makeServe(app)(
        HttpServerRequest.fromWeb(new Request("http://localhost/health")),
        target.destination
      )
      assert.isFalse(target.stream.destroyed, "the response was cut off while it was ending")
      await new Promise((resolve) => target.stream.once("finish", resolve))
      assert.strictEqual(JSON.parse(target.chunks.join("")).status, "ok")
    } finally {
      await app.dispose()
    }
  })

  it("sends the head through start, then the stream's frames, metadata first, and ends it", async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(TestStore.make().layer, EchoLanguageModel.layer({ delay: 0 }), Identity.layerAnonymous())
    )
    try {
      const target = recording()
      await NodeHandler.makeServe(app)(chatRequest("hello there"), target.destination)
      assert.strictEqual(target.head()?.status, 200)
      assert.strictEqual(target.head()?.headers["content-type"], "text/event-stream; charset=utf-8")
      assert.match(target.chunks[0]!, METADATA_FRAME)
      assert.isTrue(target.stream.writableEnded)
      assert.isTrue(target.chunks.join("").endsWith("data: [DONE]\n\n"))
    } finally {
      await app.dispose()
    }
  })

  it("with no grace window, a destination stream that closes before the end cancels the turn, whose partial reply is stored", async () => {
    const store = TestStore.make()
    const model = TestModel.make(() => TestModel.endless("part", "ial"))
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(store.layer, model.layer, Identity.layerAnonymous(), noGrace)
    )
    try {
      const target = recording()
      const served = NodeHandler.makeServe(app)(chatRequest("go on"), target.destination)
      await target.received(3)
      target.stream.destroy()
      await served
      const reply = await await_(store.assistantStored)
      assert.strictEqual(reply.status, "cancelled")
      assert.strictEqual(reply.content, "partial")
    } finally {
      await app.dispose()
    }
  })
})
