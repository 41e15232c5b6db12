import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Duration, Effect, Layer } from "effect"
import { ChatConfig, ChatHttp, EchoLanguageModel, Identity } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const fromEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env }))

const read = (env: Record<string, string>, layer = ChatConfig.layerConfig()) =>
  Effect.service(ChatConfig.ChatConfig).pipe(Effect.provide(layer.pipe(Layer.provide(fromEnv(env)))))

describe("ChatConfig.layerConfig", () => {
  it.effect("keeps the defaults when no variable is set", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* read({}), ChatConfig.defaults)
    })
  )

  it.effect("reads the reference server's variables", () =>
    Effect.gen(function* () {
      const settings = yield* read({
        CONVOKE_PUBLIC_MODEL: "house-chat",
        CONVOKE_MAX_BODY_BYTES: "4096",
        CONVOKE_HEARTBEAT_SECONDS: "5",
        CONVOKE_CREATION_BUDGET_MS: "200",
        CONVOKE_STORE_TIMEOUT_MS: "750",
        CONVOKE_MAX_MESSAGE_CHARACTERS: "1000",
        CONVOKE_MAX_JSON_DEPTH: "8"
      })
      assert.deepStrictEqual(settings, {
        ...ChatConfig.defaults,
        publicModel: "house-chat",
        maxBodyBytes: 4096,
        heartbeatInterval: Duration.seconds(5),
        creationBudget: Duration.millis(200),
        storeTimeout: Duration.millis(750),
        maxMessageCharacters: 1000,
        maxJsonDepth: 8
      })
    })
  )

  it.effect("fails naming the variable and the value expected", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(read({ CONVOKE_HEARTBEAT_SECONDS: "soon" }))
      assert.include(error.message, 'must be a whole number from 1 to 3600, got "soon"')
      assert.include(error.message, "CONVOKE_HEARTBEAT_SECONDS")
      const blank = yield* Effect.flip(read({ CONVOKE_PUBLIC_MODEL: "  " }))
      assert.include(blank.message, "must not be empty")
      assert.include(blank.message, "CONVOKE_PUBLIC_MODEL")
      const small = yield* Effect.flip(read({ CONVOKE_MAX_BODY_BYTES: "10" }))
      assert.include(small.message, 'must be a whole number from 256 to 16777216, got "10"')
    })
  )

  it.effect("reads a setting from another source when given one", () =>
    Effect.gen(function* () {
      const layer = ChatConfig.layerConfig({ ...ChatConfig.config, publicModel: Config.String("MY_MODEL") })
      const settings = yield* read({ MY_MODEL: "mine", CONVOKE_PUBLIC_MODEL: "ignored" }, layer)
      assert.strictEqual(settings.publicModel, "mine")
    })
  )

  it("limits request bodies of an application built with it", async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        TestStore.make().layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous(),
        ChatConfig.layerConfig().pipe(Layer.provide(fromEnv({ CONVOKE_MAX_BODY_BYTES: "300" })))
      )
    )
    try {
      const post = (message: string) =>
        app.handler(
          new Request("http://localhost/api/v0.3/chat", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ message })
          })
        )
      assert.strictEqual((await post("x".repeat(200))).status, 200)
      assert.strictEqual((await post("x".repeat(400))).status, 413)
    } finally {
      await app.dispose()
    }
  })
})
