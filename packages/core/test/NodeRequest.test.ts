import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ByteSize from "effect/ByteSize"
import { HttpIncomingMessage } from "effect/http"
import * as NodeRequest from "../src/NodeRequest.ts"

/**
 * Sends one request with `body` to a loopback server and hands its
 * `IncomingMessage` to `read`; resolves with what `read` resolves with.
 */
const receive = async <A>(
  body: string,
  read: (request: IncomingMessage) => Promise<A>,
  headers: Record<string, string> = {}
): Promise<A> => {
  let result: Promise<A> | undefined
  const server = createServer((request, response) => {
    result = read(request)
    result.finally(() => response.end()).catch(() => {})
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  try {
    const { port } = server.address() as AddressInfo
    await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body, headers })
    return await result!
  } finally {
    server.closeAllConnections()
    server.close()
  }
}

const text = (buffer: ArrayBuffer) => new TextDecoder().decode(buffer)

const withLimit = (bytes: number) =>
  Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(bytes))

describe("NodeRequest", () => {
  it("reads the body once for concurrent readers and for modified copies", async () => {
    const [first, second, copy] = await receive("hello body", (incoming) => {
      const request = NodeRequest.make(incoming)
      const copied = request.modify({ headers: { ...request.headers, "x-extra": "1" } })
      return Effect.runPromise(
        Effect.all([request.arrayBuffer, request.arrayBuffer, copied.arrayBuffer], { concurrency: 3 })
      )
    })
    assert.strictEqual(text(first), "hello body")
    assert.strictEqual(first, second)
    assert.strictEqual(first, copy)
  })

  it("fails with BodyTooLarge past the first reader's limit, whatever a later reader allows", async () => {
    const [small, large] = await receive("0123456789", (incoming) => {
      const request = NodeRequest.make(incoming)
      return Promise.all([
        Effect.runPromise(Effect.flip(request.arrayBuffer.pipe(withLimit(4)))),
        Effect.runPromise(Effect.flip(request.arrayBuffer.pipe(withLimit(100))))
      ])
    })
    for (const error of [small, large]) {
      const reason = error.reason
      assert.strictEqual(reason._tag === "RequestParseError" ? reason.reason : undefined, "BodyTooLarge")
    }
  })

  it("takes a body a middleware parsed as JSON, with headers that match it", async () => {
    const [body, headers] = await receive(
      "ignored",
      async (incoming) => {
        const request = NodeRequest.make(incoming, { parsedBody: { message: "hi" } })
        return [text(await Effect.runPromise(request.arrayBuffer)), request.headers] as const
      },
      { "content-type": "text/plain" }
    )
    assert.strictEqual(body, '{"message":"hi"}')
    assert.strictEqual(headers["content-type"], "application/json")
    assert.isUndefined(headers["content-length"])
  })
})
