import { assert, describe, it } from "@effect/vitest"
import { Layer } from "effect"
import { ChatHttp, Identity } from "../src/index.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestObserver from "../src/testing/TestObserver.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const chat = (app: ChatHttp.App, body: unknown) =>
  app.handler(
    new Request("http://localhost/api/v0.3/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    })
  )

describe("TestObserver", () => {
  it("records a turn's events, and resolves `until` once they have happened", async () => {
    const observer = TestObserver.make()
    const model = TestModel.make(() => TestModel.reply("Hi"))
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(TestStore.make().layer, model.layer, Identity.layerAnonymous("alice"), observer.layer)
    )
    try {
      const ended = observer.until((seen) => TestObserver.streamsEnded(seen) === 1)
      await (await chat(app, { message: "hello", stream: true })).text()
      await ended
      assert.deepStrictEqual(
        observer.seen.turnEnded.map((event) => [event.outcome, event.stream]),
        [["complete", true]]
      )
      assert.deepStrictEqual(
        observer.seen.conversationResolved.map((event) => event.source),
        ["absent"]
      )
      assert.strictEqual(observer.seen.metadataSent.length, 1)
      assert.strictEqual(observer.seen.firstToken.length, 1)
      assert.strictEqual(observer.seen.interrupted, 0)
      // A condition that holds already resolves at once.
      await observer.until((seen) => seen.turnEnded.length === 1)
    } finally {
      await app.dispose()
    }
  })
})
