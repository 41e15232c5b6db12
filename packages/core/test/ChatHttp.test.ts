import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer } from "effect"
import {
  AdminAccess,
  ChatConfig,
  ChatHttp,
  ChatMetrics,
  ConversationStore,
  EchoLanguageModel,
  Health,
  Identity
} from "../src/index.ts"
import * as Sse from "../src/testing/Sse.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const CHAT_URL = "http://localhost/api/v0.3/chat"

/** Builds an app from the layers, runs `body` with it and disposes it. */
const withApp = async <A>(
  layer: Layer.Layer<any, never, never>,
  body: (app: ChatHttp.App) => Promise<A>
): Promise<A> => {
  const app = await ChatHttp.makeApp(layer)
  try {
    return await body(app)
  } finally {
    await app.dispose()
  }
}

const echoLayer = (store = TestStore.make(), identity = Identity.layerAnonymous("alice")) =>
  Layer.mergeAll(store.layer, EchoLanguageModel.layer({ delay: 0 }), identity)

const post = (
  app: ChatHttp.App,
  body: unknown,
  headers: Record<string, string> = { "content-type": "application/json" }
) =>
  app.handler(
    new Request(CHAT_URL, {
      method: "POST",
      headers,
      body: typeof body === "string" ? body : JSON.stringify(body)
    })
  )

/** Asserts the common error shape and returns the error. */
const errorBody = async (response: Response, status: number) => {
  assert.strictEqual(response.status, status)
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/)
  const text = await response.text()
  const body = JSON.parse(text)
  assert.deepStrictEqual(Object.keys(body), ["error"])
  assert.deepStrictEqual(Object.keys(body.error), ["type", "message"])
  assert.isString(body.error.type)
  assert.isString(body.error.message)
  return { ...(body.error as { type: string; message: string }), text }
}

describe("ChatHttp POST /api/v0.3/chat, stream: true", () => {
  it("responds with the SSE headers", () =>
    withApp(echoLayer(), async (app) => {
      const response = await post(app, { message: "Hello there", stream: true })
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers.get("content-type"), "text/event-stream; charset=utf-8")
      assert.strictEqual(response.headers.get("cache-control"), "no-cache, no-transform")
      assert.strictEqual(response.headers.get("x-accel-buffering"), "no")
      await response.body?.cancel()
    }))

  it("the body is the metadata event, the content events, then data: [DONE]", () =>
    withApp(echoLayer(), async (app) => {
      const response = await post(app, { message: "Hello there", stream: true })
      const body = await response.text()
      const frames = Sse.frames(body)
      assert.isTrue(body.endsWith("data: [DONE]\n\n"))
      const metadata = Sse.data(frames[0]!)
      assert.match(metadata.conversation_id, UUID_V4)
      assert.match(metadata.turn_id, UUID_V4)
      const turn = metadata.turn_id
      assert.deepStrictEqual(frames, [
        `data: {"type":"metadata","conversation_id":"${metadata.conversation_id}","model":"unified-chat","timestamp":${metadata.timestamp},"turn_id":"${turn}"}`,
        `id: ${turn}:1\ndata: {"type":"content","delta":{"content":"Echo #1:"}}`,
        `id: ${turn}:2\ndata: {"type":"content","delta":{"content":" Hello"}}`,
        `id: ${turn}:3\ndata: {"type":"content","delta":{"content":" there"}}`,
        `id: ${turn}:4\ndata: [DONE]`
      ])
      assert.isTrue(Number.isInteger(metadata.timestamp))
    }))

  it("the first frame the body yields is the metadata event, before the model produces anything", async () => {
    const gate = Deferred.makeUnsafe<void>()
    const model = TestModel.make(() => TestModel.gated(gate, TestModel.reply("Hi")))
    await withApp(
      Layer.mergeAll(TestStore.make().layer, model.layer, Identity.layerAnonymous()),
      async (app) => {
        const response = await post(app, { message: "hello", stream: true })
        const reader = response.body!.getReader()
        // The model is held back until this read returns: the metadata cannot wait for content.
        const first = await reader.read()
        assert.match(
          new TextDecoder().decode(first.value),
          /^data: \{"type":"metadata","conversation_id":"[0-9a-f-]{36}","model":"unified-chat","timestamp":\d+,"turn_id":"[0-9a-f-]{36}"\}\n\n$/
        )
        assert.strictEqual(model.pulled(), 0)
        Deferred.doneUnsafe(gate, Effect.void)
        let rest = ""
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          rest += new TextDecoder().decode(value)
        }
        assert.deepStrictEqual(Sse.frames(rest).map(Sse.withoutId), [
          'data: {"type":"content","delta":{"content":"Hi"}}',
          "data: [DONE]"
        ])
      }
    )
  })

  it("resuming by id continues the same conversation", () =>
    withApp(echoLayer(), async (app) => {
      const first = Sse.frames(await (await post(app, { message: "one", stream: true })).text())
      const id = Sse.data(first[0]!).conversation_id
      const second = Sse.frames(
        await (await post(app, { message: "two", stream: true, conversation_id: id })).text()
      )
      assert.strictEqual(Sse.data(second[0]!).conversation_id, id)
      assert.strictEqual(Sse.data(second[1]!).delta.content, "Echo #2:")
    }))

  it("a model error after the start is an error event then [DONE], in a 200 response", async () => {
    const model = TestModel.make(() => TestModel.failAfter(["Hel"], TestModel.overloaded))
    await withApp(
      Layer.mergeAll(TestStore.make().layer, model.layer, Identity.layerAnonymous()),
      async (app) => {
        const response = await post(app, { message: "hello", stream: true })
        assert.strictEqual(response.status, 200)
        const frames = Sse.frames(await response.text())
        const turn = Sse.data(frames[0]!).turn_id
        assert.deepStrictEqual(frames.slice(1), [
          `id: ${turn}:1\ndata: {"type":"content","delta":{"content":"Hel"}}`,
          `id: ${turn}:2\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
          `id: ${turn}:3\ndata: [DONE]`
        ])
      }
    )
  })

  it("with no grace window, cancelling the body's reader cancels the turn and stores the partial reply", async () => {
    const store = TestStore.make()
    const model = TestModel.make(() => TestModel.endless("Hel", "lo"))
    const noGrace = Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make({ disconnectGrace: Duration.zero }))
    await withApp(
      Layer.mergeAll(store.layer, model.layer, Identity.layerAnonymous("alice"), noGrace),
      async (app) => {
        const response = await post(app, { message: "hello", stream: true })
        const reader = Sse.reader(response.body!)
        const id = Sse.data((await reader.next())!).conversation_id
        assert.strictEqual(Sse.data((await reader.next())!).delta.content, "Hel")
        assert.strictEqual(Sse.data((await reader.next())!).delta.content, "lo")
        await reader.cancel()
        await Effect.runPromise(Deferred.await(model.interrupted))
        const stored = await Effect.runPromise(Deferred.await(store.assistantStored))
        assert.strictEqual(stored.status, "cancelled")
        assert.deepStrictEqual(await Effect.runPromise(TestStore.transcript(store.service, "alice", id)), [
          ["user", "complete", "hello"],
          ["assistant", "cancelled", "Hello"]
        ])
      }
    )
  })

  it("shutdown ends an open stream with a shutdown error event and [DONE]; new requests get 503", async () => {
    const store = TestStore.make()
    const model = TestModel.make(() => TestModel.endless("Hel"))
    await withApp(Layer.mergeAll(store.layer, model.layer, Identity.layerAnonymous()), async (app) => {
      const response = await post(app, { message: "hello", stream: true })
      const reader = Sse.reader(response.body!)
      await reader.next()
      await reader.next()
      await app.shutdown()
      // Content the model produced before the shutdown may come first.
      let frame = (await reader.next())!
      while (Sse.data(frame).type === "content") frame = (await reader.next())!
      const error = Sse.data(frame)
      assert.strictEqual(error.type, "error")
      assert.strictEqual(error.error.type, "shutdown")
      assert.strictEqual(Sse.withoutId((await reader.next())!), "data: [DONE]")
      assert.strictEqual(await reader.next(), undefined)
      assert.strictEqual(
        (await Effect.runPromise(Deferred.await(store.assistantStored))).status,
        "interrupted"
      )
      const streaming = await errorBody(await post(app, { message: "again", stream: true }), 503)
      assert.strictEqual(streaming.type, "unavailable")
      const plain = await errorBody(await post(app, { message: "again" }), 503)
      assert.strictEqual(plain.type, "unavailable")
    })
  })
})

describe("ChatHttp POST /api/v0.3/chat, stream: false", () => {
  it("returns the whole reply as one JSON object", () =>
    withApp(echoLayer(), async (app) => {
      const response = await post(app, { message: "Hello there" })
      assert.strictEqual(response.status, 200)
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/)
      const body = await response.json()
      assert.deepStrictEqual(Object.keys(body), ["conversation_id", "model", "message", "created_at"])
      assert.match(body.conversation_id, UUID_V4)
      assert.strictEqual(body.model, "unified-chat")
      assert.deepStrictEqual(body.message, { role: "assistant", content: "Echo #1: Hello there" })
      assert.isFalse(Number.isNaN(Date.parse(body.created_at)))
    }))

  it("a client that aborts the request interrupts the model and the partial reply is stored as cancelled", async () => {
    const store = TestStore.make()
    const handled = Deferred.makeUnsafe<void>()
    const model = TestModel.make(() => TestModel.endlessSignalling(handled, "Hel", "lo"))
    await withApp(Layer.mergeAll(store.layer, model.layer, Identity.layerAnonymous("alice")), async (app) => {
      const controller = new AbortController()
      const pending = app.handler(
        new Request(CHAT_URL, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ message: "hi" }),
          signal: controller.signal
        })
      )
      // The handler's promise is not awaited: the client is gone by the time it settles.
      pending.catch(() => {})
      // Both deltas went through the service and the model is silent: now the client leaves.
      await Effect.runPromise(Deferred.await(handled))
      controller.abort()
      await Effect.runPromise(Deferred.await(model.interrupted))
      const stored = await Effect.runPromise(Deferred.await(store.assistantStored))
      assert.strictEqual(stored.status, "cancelled")
      assert.strictEqual(stored.content, "Hello")
    })
  })

  it("an unknown conversation is a 404 with the common body", () =>
    withApp(echoLayer(), async (app) => {
      const error = await errorBody(
        await post(app, { message: "hi", conversation_id: "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d" }),
        404
      )
      assert.strictEqual(error.text, '{"error":{"type":"not_found","message":"Conversation not found"}}')
    }))

  it("a malformed conversation id is a 404 with the same body", () =>
    withApp(echoLayer(), async (app) => {
      const error = await errorBody(await post(app, { message: "hi", conversation_id: "abc" }), 404)
      assert.strictEqual(error.text, '{"error":{"type":"not_found","message":"Conversation not found"}}')
    }))
})

describe("ChatHttp errors before the stream starts", () => {
  it("an unknown route is a 404", () =>
    withApp(echoLayer(), async (app) => {
      const error = await errorBody(await app.handler(new Request("http://localhost/nope")), 404)
      assert.strictEqual(error.type, "not_found")
      await errorBody(
        await app.handler(new Request("http://localhost/api/v0.2/chat", { method: "POST", body: "{}" })),
        404
      )
    }))

  it("GET on the chat endpoint is a 405 with Allow: POST", () =>
    withApp(echoLayer(), async (app) => {
      const response = await app.handler(new Request(CHAT_URL))
      assert.strictEqual(response.headers.get("allow"), "POST")
      assert.strictEqual((await errorBody(response, 405)).type, "method_not_allowed")
    }))

  it("a form body is a 415", () =>
    withApp(echoLayer(), async (app) => {
      const error = await errorBody(
        await post(app, "message=hi", { "content-type": "application/x-www-form-urlencoded" }),
        415
      )
      assert.strictEqual(error.type, "unsupported_media_type")
    }))

  it("text/plain and a missing content type are read as JSON", () =>
    withApp(echoLayer(), async (app) => {
      const plain = await post(app, { message: "hi" }, { "content-type": "text/plain;charset=UTF-8" })
      assert.strictEqual(plain.status, 200)
      assert.strictEqual((await plain.json()).message.content, "Echo #1: hi")
      const bytes = new TextEncoder().encode(JSON.stringify({ message: "hi" }))
      const untyped = await app.handler(new Request(CHAT_URL, { method: "POST", body: bytes }))
      assert.strictEqual(untyped.headers.get("content-type")?.startsWith("application/json"), true)
      assert.strictEqual(untyped.status, 200)
    }))

  it("a body past the default 32 KiB limit is a 413", () =>
    withApp(echoLayer(), async (app) => {
      const error = await errorBody(await post(app, { message: "x".repeat(33 * 1024) }), 413)
      assert.strictEqual(error.type, "request_too_large")
    }))

  it("a declared content-length past the limit is a 413", () =>
    withApp(echoLayer(), async (app) => {
      const error = await errorBody(
        await post(
          app,
          { message: "hi" },
          { "content-type": "application/json", "content-length": String(64 * 1024) }
        ),
        413
      )
      assert.strictEqual(error.type, "request_too_large")
    }))

  it("a streamed body past a configured limit is a 413", async () => {
    const layer = Layer.mergeAll(
      echoLayer(),
      Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make({ maxBodyBytes: 100 }))
    )
    await withApp(layer, async (app) => {
      const chunk = new TextEncoder().encode(`{"message":"${"x".repeat(200)}"}`)
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(chunk)
          controller.close()
        }
      })
      const response = await app.handler(
        new Request(CHAT_URL, { method: "POST", body, duplex: "half" } as RequestInit & { duplex: "half" })
      )
      assert.strictEqual((await errorBody(response, 413)).type, "request_too_large")
    })
  })

  it.each([
    { label: "invalid JSON", body: "{nope" },
    { label: "a missing message", body: "{}" },
    { label: "an empty message", body: '{"message":""}' },
    { label: "a non-boolean stream", body: '{"message":"hi","stream":"yes"}' }
  ])("$label is a 400", ({ body }) =>
    withApp(echoLayer(), async (app) => {
      assert.strictEqual((await errorBody(await post(app, body), 400)).type, "invalid_request")
    })
  )

  it("invalid UTF-8 is a 400", () =>
    withApp(echoLayer(), async (app) => {
      const bytes = new Uint8Array([...new TextEncoder().encode('{"message":"'), 0xff, 0xfe, 0x22, 0x7d])
      const response = await app.handler(
        new Request(CHAT_URL, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: bytes
        })
      )
      assert.strictEqual((await errorBody(response, 400)).type, "invalid_request")
    }))

  it("an unknown model is a 400 and no stream starts", async () => {
    const model = TestModel.make(() => TestModel.reply("ok"))
    const store = TestStore.make()
    await withApp(Layer.mergeAll(store.layer, model.layer, Identity.layerAnonymous()), async (app) => {
      const response = await post(app, { message: "hi", stream: true, model: "gpt-0" })
      assert.strictEqual((await errorBody(response, 400)).type, "invalid_request")
      assert.deepStrictEqual(store.created, [])
    })
  })
})

describe("ChatHttp with API keys", () => {
  const keys = Identity.layerApiKeys(
    [
      { key: "k1", userId: "alice" },
      { key: "k2", userId: "bob" }
      // Short keys keep these tests readable: key strength is Identity.test's.
    ],
    { minKeyLength: 0 }
  ).pipe(Layer.orDie)
  const layer = () => echoLayer(TestStore.make(), keys)

  it("missing credentials are a 401", () =>
    withApp(layer(), async (app) => {
      const response = await post(app, { message: "hi", stream: true })
      assert.strictEqual(response.headers.get("www-authenticate"), "Bearer")
      assert.strictEqual((await errorBody(response, 401)).type, "unauthenticated")
    }))

  it("a wrong key is a 401", () =>
    withApp(layer(), async (app) => {
      for (const headers of [
        { authorization: "Bearer k3" },
        { "x-api-key": "k" },
        { authorization: "Basic azE6" }
      ]) {
        const response = await post(
          app,
          { message: "hi", stream: true },
          { "content-type": "application/json", ...headers }
        )
        assert.strictEqual((await errorBody(response, 401)).type, "unauthenticated")
      }
    }))

  it("Authorization: Bearer and X-API-Key both authenticate", () =>
    withApp(layer(), async (app) => {
      for (const headers of [{ authorization: "Bearer k1" }, { "x-api-key": "k1" }]) {
        const response = await post(
          app,
          { message: "hi" },
          { "content-type": "application/json", ...headers }
        )
        assert.strictEqual(response.status, 200)
        assert.strictEqual((await response.json()).message.content, "Echo #1: hi")
      }
    }))

  it("the same user resumes by id whichever header carries the key", () =>
    withApp(layer(), async (app) => {
      const first = await (await post(app, { message: "one" }, { authorization: "Bearer k1" })).json()
      const second = await post(
        app,
        { message: "two", conversation_id: first.conversation_id },
        { "x-api-key": "k1" }
      )
      assert.strictEqual(second.status, 200)
      const body = await second.json()
      assert.strictEqual(body.conversation_id, first.conversation_id)
      assert.strictEqual(body.message.content, "Echo #2: two")
    }))

  it("alice's conversation is a 404 for bob without stream, and a new id with stream", () =>
    withApp(layer(), async (app) => {
      const alices = await (await post(app, { message: "secret" }, { authorization: "Bearer k1" })).json()
      const unknown = await post(
        app,
        { message: "hi", conversation_id: "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d" },
        { authorization: "Bearer k2" }
      )
      const plain = await post(
        app,
        { message: "hi", conversation_id: alices.conversation_id },
        { authorization: "Bearer k2" }
      )
      const plainError = await errorBody(plain, 404)
      // Indistinguishable from a conversation that does not exist.
      assert.strictEqual(plainError.text, (await errorBody(unknown, 404)).text)
      const streamed = await post(
        app,
        { message: "hi", stream: true, conversation_id: alices.conversation_id },
        { authorization: "Bearer k2" }
      )
      assert.strictEqual(streamed.status, 200)
      const frames = Sse.frames(await streamed.text())
      const metadata = Sse.data(frames[0]!)
      assert.match(metadata.conversation_id, UUID_V4)
      assert.notStrictEqual(metadata.conversation_id, alices.conversation_id)
      // Bob's new conversation has no history: the echo counts one user turn.
      assert.strictEqual(Sse.data(frames[1]!).delta.content, "Echo #1:")
      // Alice still resumes her own.
      const again = await post(
        app,
        { message: "more", conversation_id: alices.conversation_id },
        { "x-api-key": "k1" }
      )
      assert.strictEqual((await again.json()).message.content, "Echo #2: more")
    }))
})

const ADMIN_TOKEN = "admin-token-0123456789abcdef"
const DETAILS = {
  status: "ok",
  model: "echo",
  store: "memory",
  identity: "anonymous",
  outbox: { pending: 0, drained: 0, dropped: 0, recovered: 0, skipped: 0 }
}

describe("ChatHttp GET /health", () => {
  it("answers only its status to anyone", () =>
    withApp(echoLayer(), async (app) => {
      const response = await app.handler(new Request("http://localhost/health"))
      assert.strictEqual(response.status, 200)
      assert.deepStrictEqual(await response.json(), { status: "ok" })
      // A token means nothing while none is configured.
      const guessed = await app.handler(
        new Request("http://localhost/health", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      )
      assert.deepStrictEqual(await guessed.json(), { status: "ok" })
    }))

  it("names the model, the store, the identity and the outbox to the admin token only", () =>
    withApp(Layer.merge(echoLayer(), AdminAccess.layer({ token: ADMIN_TOKEN })), async (app) => {
      const details = await app.handler(
        new Request("http://localhost/health", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      )
      assert.strictEqual(details.status, 200)
      assert.deepStrictEqual(await details.json(), DETAILS)
      for (const authorization of [
        undefined,
        "Bearer wrong-token-0123456789abcdef",
        `Basic ${ADMIN_TOKEN}`
      ]) {
        const response = await app.handler(
          new Request(
            "http://localhost/health",
            authorization === undefined ? {} : { headers: { authorization } }
          )
        )
        assert.strictEqual(response.status, 200)
        assert.deepStrictEqual(await response.json(), { status: "ok" }, authorization)
      }
    }))

  it("answers 503 with its status once the application shuts down, so load balancers stop sending", async () => {
    const app = await ChatHttp.makeApp(echoLayer())
    try {
      await app.shutdown()
      const response = await app.handler(new Request("http://localhost/health"))
      assert.strictEqual(response.status, 503)
      assert.deepStrictEqual(await response.json(), { status: "shutting_down" })
    } finally {
      await app.dispose()
    }
  })

  it("serves the details to anyone on an application of its own (an admin port)", async () => {
    const app = await ChatHttp.makeApp(echoLayer())
    try {
      const admin = await Effect.runPromise(ChatHttp.withServicesOf(app.http, Health.detailsRoutes))
      const response = await ChatHttp.toWebHandler(admin)(new Request("http://localhost/health"))
      assert.deepStrictEqual(await response.json(), DETAILS)
    } finally {
      await app.dispose()
    }
  })
})

describe("ChatHttp GET /metrics with an admin token", () => {
  it("answers 401 without the token and the metrics with it", () =>
    withApp(
      Layer.mergeAll(echoLayer(), ChatMetrics.layer(), AdminAccess.layer({ token: ADMIN_TOKEN })),
      async (app) => {
        const anonymous = await app.handler(new Request("http://localhost/metrics"))
        await errorBody(anonymous, 401)
        const wrong = await app.handler(
          new Request("http://localhost/metrics", { headers: { authorization: "Bearer nope" } })
        )
        await errorBody(wrong, 401)
        const scraped = await app.handler(
          new Request("http://localhost/metrics", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
        )
        assert.strictEqual(scraped.status, 200)
        assert.include(await scraped.text(), "conversations_created_total")
      }
    ))
})

describe("ChatHttp.makeApp lifetime", () => {
  it("keeps scoped resources of the layers open until dispose", async () => {
    let open = false
    const store = TestStore.make()
    const scopedStore = Layer.effect(
      ConversationStore.ConversationStore,
      Effect.acquireRelease(
        Effect.sync(() => {
          open = true
          return store.service
        }),
        () =>
          Effect.sync(() => {
            open = false
          })
      )
    )
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(scopedStore, EchoLanguageModel.layer({ delay: 0 }), Identity.layerAnonymous("alice"))
    )
    assert.isTrue(open)
    const response = await post(app, { message: "hi" })
    assert.strictEqual(response.status, 200)
    assert.isTrue(open)
    await app.dispose()
    assert.isFalse(open)
  })
})
