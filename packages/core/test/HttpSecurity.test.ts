import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Layer } from "effect"
import { ChatHttp, EchoLanguageModel, HttpSecurity, Identity } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const CHAT_URL = "http://localhost/api/v0.3/chat"

const withApp = async <A>(
  settings: HttpSecurity.Settings | undefined,
  body: (app: ChatHttp.App) => Promise<A>
) => {
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      TestStore.make().layer,
      EchoLanguageModel.layer({ delay: 0 }),
      Identity.layerAnonymous(),
      settings === undefined ? Layer.empty : Layer.succeed(HttpSecurity.HttpSecurity, settings)
    )
  )
  try {
    return await body(app)
  } finally {
    await app.dispose()
  }
}

const chat = (
  app: ChatHttp.App,
  headers: Record<string, string> = {},
  body: unknown = { message: "hi", stream: true }
) => app.handler(new Request(CHAT_URL, { method: "POST", headers, body: JSON.stringify(body) }))

describe("HttpSecurity", () => {
  it("adds the security headers to JSON, errors and SSE streams, leaving the stream intact", () =>
    withApp(undefined, async (app) => {
      const stream = await chat(app)
      assert.strictEqual(stream.status, 200)
      assert.strictEqual(stream.headers.get("content-type"), "text/event-stream; charset=utf-8")
      assert.strictEqual(stream.headers.get("x-content-type-options"), "nosniff")
      assert.strictEqual(stream.headers.get("referrer-policy"), "no-referrer")
      assert.strictEqual(stream.headers.get("x-frame-options"), "DENY")
      assert.strictEqual(
        stream.headers.get("content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
      )
      const text = await stream.text()
      assert.match(text, /^data: \{"type":"metadata"/)
      assert.isTrue(text.endsWith("data: [DONE]\n\n"))
      const error = await chat(app, {}, { message: "" })
      assert.strictEqual(error.status, 400)
      assert.strictEqual(error.headers.get("x-content-type-options"), "nosniff")
      // Without CORS configured, no origin is allowed.
      const crossOrigin = await chat(app, { origin: "https://app.example" })
      assert.isNull(crossOrigin.headers.get("access-control-allow-origin"))
      await crossOrigin.text()
    }))

  it("answers preflights from allowed origins, refuses others, and marks actual responses", () =>
    withApp({ securityHeaders: true, cors: { allowedOrigins: ["https://app.example"] } }, async (app) => {
      const preflight = await app.handler(
        new Request(CHAT_URL, {
          method: "OPTIONS",
          headers: {
            origin: "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization"
          }
        })
      )
      assert.strictEqual(preflight.status, 204)
      assert.strictEqual(preflight.headers.get("access-control-allow-origin"), "https://app.example")
      assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/)
      // Every header Convoke's clients send, or a page on another origin cannot use them.
      const allowed = (preflight.headers.get("access-control-allow-headers") ?? "").split(/\s*,\s*/)
      for (const header of [
        "authorization",
        "x-api-key",
        "content-type",
        "accept",
        "last-event-id",
        "x-convoke-client"
      ]) {
        assert.include(allowed, header)
      }
      assert.match(preflight.headers.get("vary") ?? "", /Origin/)

      const refused = await app.handler(
        new Request(CHAT_URL, { method: "OPTIONS", headers: { origin: "https://evil.example" } })
      )
      assert.strictEqual(refused.status, 403)
      assert.deepStrictEqual(Object.keys((await refused.json()).error), ["type", "message"])
      assert.isNull(refused.headers.get("access-control-allow-origin"))

      const actual = await chat(app, { origin: "https://app.example" })
      assert.strictEqual(actual.status, 200)
      assert.strictEqual(actual.headers.get("access-control-allow-origin"), "https://app.example")
      assert.match(actual.headers.get("access-control-expose-headers") ?? "", /x-request-id/)
      assert.match(await actual.text(), /\[DONE\]/)
      const other = await chat(app, { origin: "https://evil.example" })
      assert.isNull(other.headers.get("access-control-allow-origin"))
      await other.text()
    }))
})

describe("HttpSecurity.config", () => {
  const read = (env: Record<string, string>) =>
    Effect.runPromise(Config.unwrap(HttpSecurity.config).parse(ConfigProvider.fromEnv({ env })))

  it("keeps CORS off unless CONVOKE_CORS_ORIGINS lists origins, or * for any", async () => {
    assert.deepStrictEqual(await read({}), { cors: undefined, securityHeaders: true })
    assert.deepStrictEqual(await read({ CONVOKE_CORS_ORIGINS: " " }), {
      cors: undefined,
      securityHeaders: true
    })
    assert.deepStrictEqual((await read({ CONVOKE_CORS_ORIGINS: "*" })).cors, { allowedOrigins: "*" })
    assert.deepStrictEqual(
      (await read({ CONVOKE_CORS_ORIGINS: "https://a.example, https://b.example:8443," })).cors,
      { allowedOrigins: ["https://a.example", "https://b.example:8443"] }
    )
  })

  it("names every value that is not an origin", async () => {
    const error = await read({
      CONVOKE_CORS_ORIGINS: "https://ok.example,https://bad.example/path,app.example"
    }).then(
      () => assert.fail("expected a ConfigError"),
      (caught: Config.ConfigError) => caught
    )
    assert.include(error.message, "CONVOKE_CORS_ORIGINS")
    assert.include(error.message, '"https://bad.example/path" is not an origin')
    assert.include(error.message, '"app.example" is not an origin')
    assert.notInclude(error.message, '"https://ok.example"')
  })

  it("gives an application built with layerConfig its CORS", async () => {
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        TestStore.make().layer,
        EchoLanguageModel.layer({ delay: 0 }),
        Identity.layerAnonymous(),
        HttpSecurity.layerConfig().pipe(
          Layer.provide(
            ConfigProvider.layer(
              ConfigProvider.fromEnv({ env: { CONVOKE_CORS_ORIGINS: "https://app.example" } })
            )
          )
        )
      )
    )
    try {
      const preflight = (origin: string) =>
        app.handler(
          new Request(CHAT_URL, {
            method: "OPTIONS",
            headers: { origin, "access-control-request-method": "POST" }
          })
        )
      assert.strictEqual((await preflight("https://app.example")).status, 204)
      assert.strictEqual((await preflight("https://evil.example")).status, 403)
    } finally {
      await app.dispose()
    }
  })
})
