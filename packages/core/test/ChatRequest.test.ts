import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { HttpServerRequest } from "effect/http"
import { ChatConfig, ChatError, ChatRequest } from "../src/index.ts"

const encoder = new TextEncoder()

/**
 * Reads `bytes` as the body of a web request with the chat endpoint's rules,
 * recording whether the body was pulled at all.
 */
const readBody = (
  bytes: Uint8Array | string,
  options: {
    readonly contentType?: string | undefined
    readonly contentLength?: string
    readonly maxBodyBytes?: number
  } = {}
) => {
  let bodyRead = false
  // No high-water mark: the body is pulled only when it is read.
  const body = new ReadableStream<Uint8Array>(
    {
      pull: (controller) => {
        bodyRead = true
        controller.enqueue(typeof bytes === "string" ? encoder.encode(bytes) : bytes)
        controller.close()
      }
    },
    { highWaterMark: 0 }
  )
  const contentType = "contentType" in options ? options.contentType : "application/json"
  const headers = new Headers()
  if (contentType !== undefined) headers.set("content-type", contentType)
  if (options.contentLength !== undefined) headers.set("content-length", options.contentLength)
  const request = new Request("http://localhost/api/v0.3/chat", {
    method: "POST",
    headers,
    body,
    duplex: "half"
  } as RequestInit)
  const effect = ChatRequest.read(
    HttpServerRequest.fromWeb(request),
    ChatConfig.make({ maxBodyBytes: options.maxBodyBytes ?? 1024 })
  )
  return { effect, bodyRead: () => bodyRead }
}

describe("ChatRequest.parse", () => {
  it.effect("decodes a full request", () =>
    Effect.gen(function* () {
      const request = yield* ChatRequest.parse(
        JSON.stringify({ message: "hi", model: "claude-sonnet-4-5", stream: true, conversation_id: "new" })
      )
      assert.deepStrictEqual(request, {
        message: "hi",
        model: "claude-sonnet-4-5",
        stream: true,
        conversation_id: "new"
      })
    })
  )

  it.effect("accepts conversation_id: null and leaves omitted fields absent", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* ChatRequest.parse('{"message":"hi","conversation_id":null}'), {
        message: "hi",
        conversation_id: null
      })
      const minimal = yield* ChatRequest.parse('{"message":"hi"}')
      assert.deepStrictEqual(minimal, { message: "hi" })
      assert.isFalse("stream" in minimal)
    })
  )

  it.effect("ignores unknown fields", () =>
    Effect.gen(function* () {
      const request = yield* ChatRequest.parse('{"message":"hi","temperature":0.2,"extra":{"nested":true}}')
      assert.deepStrictEqual(request, { message: "hi" })
    })
  )

  it.effect.each([
    { label: "not JSON", body: "message=hi", mentions: "JSON" },
    { label: "truncated JSON", body: '{"message":"hi"', mentions: "JSON" },
    { label: "an empty body", body: "", mentions: "JSON" },
    { label: "a JSON array", body: '[{"message":"hi"}]', mentions: "object" },
    { label: "a JSON number", body: "42", mentions: "object" },
    { label: "a JSON string", body: '"hi"', mentions: "object" },
    { label: "JSON null", body: "null", mentions: "object" },
    { label: "a missing message", body: '{"stream":true}', mentions: "message" },
    { label: "an empty message", body: '{"message":""}', mentions: "message" },
    { label: "a numeric message", body: '{"message":42}', mentions: "message" },
    { label: "a message with a NUL character", body: '{"message":"a\\u0000b"}', mentions: "NUL" },
    { label: "a null message", body: '{"message":null}', mentions: "message" },
    { label: "a string stream flag", body: '{"message":"hi","stream":"true"}', mentions: "stream" },
    { label: "a numeric stream flag", body: '{"message":"hi","stream":1}', mentions: "stream" },
    { label: "a numeric model", body: '{"message":"hi","model":5}', mentions: "model" },
    {
      label: "a numeric conversation_id",
      body: '{"message":"hi","conversation_id":123}',
      mentions: "conversation_id"
    },
    {
      label: "an object conversation_id",
      body: '{"message":"hi","conversation_id":{}}',
      mentions: "conversation_id"
    }
  ])("$label is an InvalidRequest naming the problem", ({ body, mentions }) =>
    Effect.gen(function* () {
      const error = yield* ChatRequest.parse(body).pipe(Effect.flip)
      assert.instanceOf(error, ChatError.InvalidRequest)
      assert.include(error.message, mentions)
    })
  )
})

describe("ChatRequest.read", () => {
  it.effect.each([
    { label: "application/json", contentType: "application/json" },
    { label: "application/json with a charset", contentType: "application/json; charset=utf-8" },
    { label: "upper-case Application/JSON", contentType: "Application/JSON" },
    { label: "text/plain (a browser fetch with a string body)", contentType: "text/plain;charset=UTF-8" },
    { label: "no content type", contentType: undefined }
  ])("accepts $label", ({ contentType }) =>
    Effect.gen(function* () {
      const request = yield* readBody('{"message":"hi","stream":true}', { contentType }).effect
      assert.deepStrictEqual(request, { message: "hi", stream: true })
    })
  )

  it.effect.each([
    { contentType: "application/x-www-form-urlencoded" },
    { contentType: "multipart/form-data; boundary=x" },
    { contentType: "application/xml" }
  ])("rejects $contentType as UnsupportedMediaType without reading the body", ({ contentType }) =>
    Effect.gen(function* () {
      const { effect, bodyRead } = readBody('{"message":"hi"}', { contentType })
      const error = yield* Effect.flip(effect)
      assert.instanceOf(error, ChatError.UnsupportedMediaType)
      assert.strictEqual((error as ChatError.UnsupportedMediaType).contentType, contentType)
      assert.isFalse(bodyRead())
    })
  )

  it.effect("a declared content-length past the limit is RequestTooLarge without reading the body", () =>
    Effect.gen(function* () {
      const { effect, bodyRead } = readBody('{"message":"hi"}', { contentLength: "65", maxBodyBytes: 64 })
      const error = yield* Effect.flip(effect)
      assert.instanceOf(error, ChatError.RequestTooLarge)
      assert.strictEqual((error as ChatError.RequestTooLarge).limitBytes, 64)
      assert.isFalse(bodyRead())
    })
  )

  it.effect("more actual bytes than the limit is RequestTooLarge, whatever content-length says", () =>
    Effect.gen(function* () {
      const body = JSON.stringify({ message: "x".repeat(100) })
      for (const contentLength of [undefined, "10"]) {
        const error = yield* Effect.flip(
          readBody(body, { maxBodyBytes: 64, ...(contentLength === undefined ? {} : { contentLength }) })
            .effect
        )
        assert.instanceOf(error, ChatError.RequestTooLarge)
      }
    })
  )

  it.effect("a body of exactly the limit is accepted; the limit counts bytes, not characters", () =>
    Effect.gen(function* () {
      const exact = JSON.stringify({ message: "x".repeat(64 - 14) })
      assert.strictEqual(encoder.encode(exact).byteLength, 64)
      const request = yield* readBody(exact, { maxBodyBytes: 64, contentLength: "64" }).effect
      assert.strictEqual(request.message.length, 50)
      // 26 "é" are 26 characters but 52 bytes: with the JSON around them, 40 characters but 66 bytes.
      const accented = JSON.stringify({ message: "é".repeat(26) })
      assert.isTrue(accented.length <= 64)
      const error = yield* Effect.flip(readBody(accented, { maxBodyBytes: 64 }).effect)
      assert.instanceOf(error, ChatError.RequestTooLarge)
    })
  )

  it.effect("invalid UTF-8 is an InvalidRequest", () =>
    Effect.gen(function* () {
      const prefix = encoder.encode('{"message":"')
      const suffix = encoder.encode('"}')
      const bytes = new Uint8Array([...prefix, 0xc3, 0x28, ...suffix])
      const error = yield* Effect.flip(readBody(bytes).effect)
      assert.instanceOf(error, ChatError.InvalidRequest)
      assert.include(error.message, "UTF-8")
    })
  )

  it.effect("multi-byte UTF-8 is decoded", () =>
    Effect.gen(function* () {
      const request = yield* readBody('{"message":"héllo 👋 世界"}').effect
      assert.strictEqual(request.message, "héllo 👋 世界")
    })
  )

  it.effect("an invalid body after an accepted content type is an InvalidRequest", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(readBody('{"message":""}', { contentType: "text/plain" }).effect)
      assert.instanceOf(error, ChatError.InvalidRequest)
    })
  )
})
