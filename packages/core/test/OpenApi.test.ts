/**
 * The OpenAPI document: valid OpenAPI 3.1 by a real validator, complete
 * (every route of the table is in it) and true — a request and the answer of
 * every route, sent to a real application over loopback, match the
 * document's schemas for their status and content type.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, expect, it } from "@effect/vitest"
import { Validator } from "@seriousme/openapi-schema-validator"
import { Ajv2020 } from "ajv/dist/2020.js"
import { type Context, Effect, Layer } from "effect"
import { AdminAccess, ChatConfig, ChatHttp, ChatMetrics, Identity, OpenApi } from "../src/index.ts"
import { NodeHandler, NodeSocket } from "../src/node.ts"
import * as SocketClient from "../src/testing/SocketClient.ts"
import * as Sse from "../src/testing/Sse.ts"
import * as TestModel from "../src/testing/TestModel.ts"
import * as TestStore from "../src/testing/TestStore.ts"
import * as OpenApiMarkdown from "./OpenApiMarkdown.ts"

const KEY = "openapi-test-key-0123456789abcdef-ghijklmnopqrstuvwxyz"
const AUTH = { authorization: `Bearer ${KEY}` }
const ADMIN_TOKEN = "openapi-admin-token-0123456789"
const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` }

const document = OpenApi.make() as {
  readonly paths: Record<string, Record<string, any>>
  readonly [key: string]: unknown
}

/** `{id}` paths of the document as the route table writes them (`:id`). */
const tablePath = (path: string) => path.replace(/\{(\w+)\}/g, ":$1")

const METHODS = ["get", "put", "post", "patch", "delete"] as const

/** Every operation of the document, as `METHOD /path` in the route table's spelling. */
const operations = Object.entries(document.paths).flatMap(([path, item]) =>
  METHODS.filter((method) => item[method] !== undefined).map(
    (method) => `${method.toUpperCase()} ${tablePath(path)}`
  )
)

// Not strict: the document's own keywords (`openapi`, `paths`, `x-event-schema`…) are not JSON Schema.
const ajv = new Ajv2020({ strict: false, allErrors: true })
ajv.addSchema(document, "openapi")

/** A JSON Pointer token. */
const token = (segment: string) => segment.replace(/~/g, "~0").replace(/\//g, "~1")

const validate = (pointer: ReadonlyArray<string>, value: unknown, label: string) => {
  const check = ajv.compile({ $ref: `openapi#/${pointer.map(token).join("/")}` })
  assert.isTrue(check(value), `${label}: ${JSON.stringify(check.errors)} for ${JSON.stringify(value)}`)
}

/** The operations a sample was checked against. */
const sampled = new Set<string>()

/**
 * Checks an answer against the document: its status is documented for the
 * operation, and its body matches the schema of its content type (each
 * event's data for a stream; nothing where the document says no content).
 */
const checkResponse = async (method: string, path: string, response: Response) => {
  const label = `${method} ${path} → ${response.status}`
  const item = document.paths[path]
  assert.isDefined(item, `${path} is in the document`)
  const operation = item![method.toLowerCase()]
  assert.isDefined(operation, `${method} ${path} is in the document`)
  sampled.add(`${method} ${tablePath(path)}`)
  const spec = operation.responses[String(response.status)]
  assert.isDefined(spec, `${label} is documented`)
  const text = await response.text()
  const content = spec.content as Record<string, any> | undefined
  if (content === undefined) {
    assert.strictEqual(text, "", `${label} has no body`)
    return
  }
  const contentType = response.headers.get("content-type") ?? ""
  const essence = contentType.split(";")[0]!.trim()
  const mediaType = content[contentType] !== undefined ? contentType : essence
  assert.isDefined(content[mediaType], `${label}: ${contentType} is documented`)
  const pointer = [
    "paths",
    path,
    method.toLowerCase(),
    "responses",
    String(response.status),
    "content",
    mediaType
  ]
  if (mediaType === "text/event-stream") {
    const frames = Sse.frames(text)
    assert.strictEqual(
      frames.at(-1)?.replace(/^id: [^\n]*\n/, ""),
      "data: [DONE]",
      `${label} ends with [DONE]`
    )
    for (const frame of frames.slice(0, -1)) {
      validate([...pointer, "x-event-schema"], Sse.data(frame), `${label} event`)
    }
  } else if (mediaType === "application/json") {
    validate([...pointer, "schema"], JSON.parse(text), label)
  } else {
    validate([...pointer, "schema"], text, label)
  }
}

/** Checks a request body against the operation's request schema: it matches, or it is one the server refuses. */
const checkRequest = (method: string, path: string, body: unknown, valid: boolean) => {
  const pointer = [
    "paths",
    path,
    method.toLowerCase(),
    "requestBody",
    "content",
    "application/json",
    "schema"
  ]
  const check = ajv.compile({ $ref: `openapi#/${pointer.map(token).join("/")}` })
  assert.strictEqual(check(body), valid, `${method} ${path} request ${JSON.stringify(body)}`)
}

describe("OpenApi", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const result = await new Validator().validate(document as Record<string, unknown>)
    assert.isTrue(result.valid, JSON.stringify(result.errors, null, 2))
    assert.strictEqual(document.openapi, "3.1.0")
  })

  it("is the copy in docs/openapi.json that the README links (update it with `vitest run -u`)", async () => {
    await expect(`${JSON.stringify(document, null, 2)}\n`).toMatchFileSnapshot("../../../docs/openapi.json")
  })

  it("is rendered in docs/api.md (update it with `vitest run -u`)", async () => {
    await expect(OpenApiMarkdown.render(document)).toMatchFileSnapshot("../../../docs/api.md")
  })

  it("answers every route of the table and a request and answer of each match it, over loopback", async () => {
    const model = TestModel.make(() => TestModel.reply("Hello", " there"))
    const app = await ChatHttp.makeApp(
      Layer.mergeAll(
        TestStore.make().layer,
        model.layer,
        Identity.layerApiKeys([{ key: KEY, userId: "alice" }]).pipe(Layer.orDie),
        Layer.succeed(ChatConfig.ChatConfig, ChatConfig.make()),
        ChatMetrics.layer(),
        AdminAccess.layer({ token: ADMIN_TOKEN })
      )
    )
    const server: Server = createServer(NodeHandler.toNodeHandler(app))
    NodeSocket.attach(server, app)
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      // Complete: the route table and the document list the same operations.
      const table = await Effect.runPromise(
        Effect.scoped(
          ChatHttp.routes.pipe(
            Effect.provideContext(app.http.context as Context.Context<ChatHttp.Requirements>)
          )
        )
      )
      assert.deepStrictEqual(
        new Set(table.map((route) => `${route.method} ${route.path}`)),
        new Set(operations),
        "the document's operations are the route table's"
      )

      const send = async (
        method: string,
        path: string,
        options: {
          readonly url?: string
          readonly body?: unknown
          readonly headers?: Record<string, string>
        } = {}
      ) => {
        const response = await fetch(`${base}${options.url ?? path}`, {
          method,
          headers: {
            ...AUTH,
            ...(options.body === undefined ? {} : { "content-type": "application/json" }),
            ...options.headers
          },
          ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
        })
        // A body the server refuses as invalid is one the document's schema refuses too.
        if (options.body !== undefined) checkRequest(method, path, options.body, response.status !== 400)
        const copy = response.clone()
        await checkResponse(method, path, response)
        return copy
      }

      const CHAT = "/api/v0.3/chat"
      const stream = await send("POST", CHAT, { body: { message: "Hi", stream: true } })
      assert.strictEqual(stream.status, 200)
      const conversationId = Sse.data(Sse.frames(await stream.text())[0]!).conversation_id as string
      const whole = await send("POST", CHAT, { body: { message: "Again", conversation_id: conversationId } })
      assert.strictEqual(whole.status, 200)
      assert.strictEqual((await send("POST", CHAT, { body: { message: "" } })).status, 400)
      assert.strictEqual(
        (await send("POST", CHAT, { body: { message: "Hi" }, headers: { authorization: "" } })).status,
        401
      )
      const unknown = "00000000-0000-4000-8000-000000000000"
      assert.strictEqual(
        (await send("POST", CHAT, { body: { message: "Hi", conversation_id: unknown } })).status,
        404
      )

      const LIST = "/api/v0.3/conversations"
      assert.strictEqual((await send("GET", LIST, { url: `${LIST}?limit=5` })).status, 200)
      assert.strictEqual((await send("GET", LIST, { url: `${LIST}?limit=500` })).status, 400)

      const ONE = "/api/v0.3/conversations/{id}"
      const one = `${LIST}/${conversationId}`
      assert.strictEqual((await send("GET", ONE, { url: one })).status, 200)
      assert.strictEqual((await send("GET", ONE, { url: `${LIST}/${unknown}` })).status, 404)
      assert.strictEqual((await send("PATCH", ONE, { url: one, body: { title: "Renamed" } })).status, 200)
      assert.strictEqual((await send("PATCH", ONE, { url: one, body: { title: 7 } })).status, 400)

      const STREAM = "/api/v0.3/conversations/{id}/stream"
      const resumed = await send("GET", STREAM, { url: `${one}/stream` })
      assert.oneOf(resumed.status, [200, 204])
      assert.strictEqual(
        (await send("GET", STREAM, { url: `${one}/stream`, headers: { "last-event-id": "nope" } })).status,
        400
      )

      const STOP = "/api/v0.3/conversations/{id}/stop"
      assert.strictEqual((await send("POST", STOP, { url: `${one}/stop` })).status, 204)

      const TICKET = "/api/v0.3/ws/ticket"
      const issued = await send("POST", TICKET)
      assert.strictEqual(issued.status, 201)
      const { ticket } = (await issued.json()) as { ticket: string }

      const SOCKET = "/api/v0.3/ws"
      assert.strictEqual((await send("GET", SOCKET)).status, 426)
      // The upgrade itself: 101, and a socket that carries a turn.
      const socket = await SocketClient.open(SocketClient.socketUrl(base, `ticket=${ticket}`))
      socket.send({ type: "chat.send", request_id: "r1", message: "Hi" })
      const metadata = await socket.next((frame) => frame.type === "metadata")
      validate(["components", "schemas", "MetadataEvent"], metadata, "socket metadata")
      socket.drop()
      sampled.add(`GET ${SOCKET}`)
      assert.isDefined(document.paths[SOCKET]!.get.responses["101"])

      assert.strictEqual((await send("GET", "/health", { headers: { authorization: "" } })).status, 200)
      assert.strictEqual((await send("GET", "/health", { headers: ADMIN })).status, 200)
      assert.strictEqual((await send("GET", "/metrics", { headers: ADMIN })).status, 200)
      assert.strictEqual((await send("GET", "/metrics")).status, 401)

      const served = await send("GET", OpenApi.OPENAPI_PATH, { headers: { authorization: "" } })
      assert.strictEqual(served.status, 200)
      assert.deepStrictEqual(await served.json(), JSON.parse(JSON.stringify(document)))

      assert.strictEqual((await send("DELETE", ONE, { url: one })).status, 204)
      assert.strictEqual((await send("DELETE", ONE, { url: one })).status, 404)

      await app.shutdown()
      assert.strictEqual((await send("GET", "/health", { headers: { authorization: "" } })).status, 503)
      assert.strictEqual((await send("POST", CHAT, { body: { message: "Hi", stream: true } })).status, 503)

      assert.deepStrictEqual(new Set(sampled), new Set(operations), "every operation was sampled")
    } finally {
      await app.shutdown()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await app.dispose()
    }
  })
})
