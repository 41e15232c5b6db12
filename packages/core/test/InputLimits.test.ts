import { assert, describe, it } from "@effect/vitest"
import { Layer } from "effect"
import { ChatConfig, ChatHttp, EchoLanguageModel, Identity, RequestBody } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

describe("RequestBody.jsonDepth", () => {
  it.each([
    ["{}", 1],
    ['{"a":[1,{"b":2}]}', 3],
    ['{"a":"[[[[{{{{"}', 1],
    ['{"a":"\\"[[["}', 1],
    ["[".repeat(10_000), 10_000]
  ])("%s → %i", (text, depth) => {
    assert.strictEqual(RequestBody.jsonDepth(text), depth)
  })
})

describe("input limits of the chat endpoint", () => {
  const withApp = async <A>(body: (app: ChatHttp.App, store: TestStore.TestStore) => Promise<A>) => {
    const store = TestStore.make()
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        store.layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous(),
        Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make({ maxMessageCharacters: 10, maxJsonDepth: 4 }))
      )
    )
    try {
      return await body(app, store)
    } finally {
      await app.dispose()
    }
  }
  const post = (app: ChatHttp.App, text: string) =>
    app.handler(
      new Request("http://localhost/api/v0.3/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: text
      })
    )

  it("rejects deep nesting and long messages with a 400, writing nothing; counts characters, not UTF-16 units", () =>
    withApp(async (app, store) => {
      const deep = await post(app, `{"message":"hi","extra":${"[".repeat(5000)}${"]".repeat(5000)}}`)
      assert.strictEqual(deep.status, 400)
      assert.match((await deep.json()).error.message, /nested deeper than 4/)
      const long = await post(app, JSON.stringify({ message: "x".repeat(11) }))
      assert.strictEqual(long.status, 400)
      assert.deepStrictEqual(await long.json(), {
        error: { type: "invalid_request", message: "message: must be at most 10 characters" }
      })
      assert.strictEqual(store.created.length, 0)
      // Ten emoji are twenty UTF-16 units but ten characters.
      const emoji = await post(app, JSON.stringify({ message: "😀".repeat(10) }))
      assert.strictEqual(emoji.status, 200)
      // Unknown fields are ignored, within the depth limit.
      const extra = await post(app, JSON.stringify({ message: "hi", temperature: 0.2, tools: [{ a: 1 }] }))
      assert.strictEqual(extra.status, 200)
      assert.strictEqual(store.created.length, 2)
    }))
})
