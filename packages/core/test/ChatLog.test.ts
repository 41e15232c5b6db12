import * as Prometheus from "@convoke/prometheus-text"
import { assert, describe, it } from "@effect/vitest"
import { Layer, Logger } from "effect"
import { ChatHttp, ChatLog, ChatMetrics, EchoLanguageModel, Identity } from "../src/index.ts"
import * as Sse from "../src/testing/Sse.ts"
import * as TestStore from "../src/testing/TestStore.ts"

type Entry = {
  readonly message: unknown
  readonly level: string
  readonly annotations: Record<string, unknown>
}

/** A logger that keeps structured entries instead of printing them. */
const capture = () => {
  const entries: Array<Entry> = []
  const logger = Logger.map(Logger.formatStructured, (entry) => {
    entries.push(entry)
  })
  return { entries, layer: Logger.layer([logger]) }
}

const post = (app: ChatHttp.App, body: unknown, headers: Record<string, string> = {}) =>
  app.handler(
    new Request("http://localhost/api/v0.3/chat", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body)
    })
  )

const withApp = async <A>(layer: Layer.Layer<any, never, never>, body: (app: ChatHttp.App) => Promise<A>) => {
  const app = await ChatHttp.makeApp(layer)
  try {
    return await body(app)
  } finally {
    await app.dispose()
  }
}

describe("ChatLog", () => {
  it("logs the request and the turn with their ids and durations, never the message", async () => {
    const logs = capture()
    const store = TestStore.make()
    const layer = Layer.mergeAll(
      store.layer,
      EchoLanguageModel.layer({ delay: 0 }),
      Identity.layerAnonymous("alice"),
      ChatLog.layer(),
      logs.layer
    )
    await withApp(layer, async (app) => {
      const response = await post(
        app,
        { message: "a secret message", stream: true },
        { "x-request-id": "req-42", "x-convoke-client": "unity" }
      )
      assert.strictEqual(response.headers.get("x-request-id"), "req-42")
      const frames = Sse.frames(await response.text())
      const conversationId = Sse.data(frames[0]!).conversation_id
      // The turn's line is written by the stream's finalizer, before the body ends.
      const byMessage = (message: string) => logs.entries.filter((entry) => entry.message === message)
      const [handled] = byMessage("Request handled")
      assert.deepInclude(handled!.annotations, {
        requestId: "req-42",
        method: "POST",
        path: "/api/v0.3/chat",
        client: "unity",
        status: 200
      })
      assert.isNumber(handled!.annotations.durationMillis)
      const [resolved] = byMessage("Conversation resolved")
      assert.deepInclude(resolved!.annotations, {
        requestId: "req-42",
        userId: "alice",
        conversationId,
        source: "absent",
        created: true
      })
      const [ended] = byMessage("Chat turn ended")
      assert.deepInclude(ended!.annotations, {
        requestId: "req-42",
        userId: "alice",
        conversationId,
        outcome: "complete",
        stream: true
      })
      assert.isNumber(ended!.annotations.durationMillis)
      assert.notInclude(JSON.stringify(logs.entries), "secret")
    })
  })

  it("gives a request without an id the same fresh id in the logs and the response", async () => {
    const logs = capture()
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      EchoLanguageModel.layer({ delay: 0 }),
      Identity.layerAnonymous("alice"),
      ChatLog.layer(),
      logs.layer
    )
    await withApp(layer, async (app) => {
      const response = await post(app, { message: "hi" })
      await response.json()
      const requestId = response.headers.get("x-request-id")
      assert.isString(requestId)
      const ids = new Set(
        logs.entries
          .filter((entry) => "requestId" in entry.annotations)
          .map((entry) => entry.annotations.requestId)
      )
      assert.deepStrictEqual([...ids], [requestId])
    })
  })

  it("composes with ChatMetrics by merging layers", async () => {
    const logs = capture()
    const metrics = ChatMetrics.make()
    const layer = Layer.mergeAll(
      TestStore.make().layer,
      EchoLanguageModel.layer({ delay: 0 }),
      Identity.layerAnonymous("alice"),
      ChatLog.layer(),
      ChatMetrics.layer({ metrics }),
      logs.layer
    )
    await withApp(layer, async (app) => {
      await (await post(app, { message: "hi", stream: true })).text()
      assert.strictEqual((await app.handler(new Request("http://localhost/metrics"))).status, 200)
    })
    const parsed = Prometheus.parse(metrics.format())
    assert.strictEqual(parsed.value("conversations_created_total", { source: "absent" }), 1)
    assert.strictEqual(parsed.value("chat_requests_total", { client: "other", status: "200" }), 1)
    assert.isTrue(logs.entries.some((entry) => entry.message === "Chat turn ended"))
  })
})
