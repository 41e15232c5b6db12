/**
 * Slow clients over real sockets against the reference server: request heads
 * and bodies that never finish get a 408 with the common error body and the
 * connection closed; an upload that stalls holds no in-flight slot; a reader
 * that stops reading is disconnected (and the turn follows the disconnect
 * rules); connections past the cap are refused with a 503; a half-read
 * request to a static file does not keep its connection.
 *
 * Every timeout here is short and configured, and every wait is on a signal:
 * a socket closing, a hook firing.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ChatConfig } from "@convoke/core"
import { TestModel, TestObserver } from "@convoke/core/testing"
import { Duration, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { chat, readAll, startServer } from "./helpers.ts"
import { type RawConnection, rawConnection } from "./rawSocket.ts"

const SHORT = 200

const observer = TestObserver.make()
// Every chat on the slow server talks until its reader goes away.
const model = TestModel.make(() => TestModel.forever("x".repeat(16 * 1024)))
/** Short limits on heads, bodies and readers; static files. */
let slow: RunningServer
/** One chat in flight per user, the default (long) body timeout, two requests per connection. */
let limited: RunningServer
/** One connection at most. */
let capped: RunningServer

beforeAll(async () => {
  const webDir = mkdtempSync(join(tmpdir(), "convoke-static-"))
  writeFileSync(join(webDir, "index.html"), "<!doctype html><title>t</title>")
  // One after another: embedded databases starting side by side on a busy machine time out.
  slow = await startServer(
    {
      shutdownGraceMs: 100,
      headersTimeoutMs: SHORT,
      chat: ChatConfig.make({
        bodyTimeout: Duration.millis(SHORT),
        drainTimeout: Duration.millis(SHORT),
        disconnectGrace: Duration.zero
      }),
      webDir
    },
    { layer: Layer.mergeAll(model.layer, observer.layer) }
  )
  limited = await startServer({
    shutdownGraceMs: 100,
    maxRequestsPerSocket: 2,
    rateLimit: {
      user: { limit: 0, window: Duration.minutes(1) },
      address: { limit: 0, window: Duration.minutes(1) },
      failures: { limit: 0, window: Duration.minutes(1) },
      concurrent: 1,
      prefix: "unused:"
    }
  })
  capped = await startServer({ shutdownGraceMs: 100, maxConnections: 1 })
}, 120_000)

afterAll(async () => {
  await Promise.all([slow, limited, capped].map((server) => server?.close()))
})

const chatHead = (length: number) =>
  `POST /api/v0.3/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`

/** The status line and JSON body of a whole response read off a raw socket. */
const parsed = (text: string) => {
  const [head = "", body = ""] = text.split("\r\n\r\n")
  return { status: Number(head.split(" ")[1]), head: head.toLowerCase(), body: JSON.parse(body) }
}

describe("slow clients", () => {
  it("answers a request head that never ends with 408 and the common body, then closes", async () => {
    const connection: RawConnection = await rawConnection(slow.port)
    connection.socket.write("POST /api/v0.3/chat HTTP/1.1\r\nhost: 127.0.0.1\r\n")
    const response = parsed(await connection.closed)
    expect(response.status).toBe(408)
    expect(response.body).toEqual({
      error: { type: "request_timeout", message: expect.any(String) }
    })
    expect(response.head).toContain("connection: close")
  })

  it("answers a connection that sends nothing with 408 too", async () => {
    const connection = await rawConnection(slow.port)
    expect(parsed(await connection.closed).status).toBe(408)
  })

  it("answers a body that stops arriving with 408 and the common body, then closes", async () => {
    const connection = await rawConnection(slow.port)
    connection.socket.write(`${chatHead(100)}{"message":"he`)
    const response = parsed(await connection.closed)
    expect(response.status).toBe(408)
    expect(response.body).toEqual({
      error: { type: "request_timeout", message: expect.any(String) }
    })
  })

  it("takes the in-flight slot only once the body is read: a stalled upload blocks no one", async () => {
    const server = limited
    // The stalled upload has reached the handler once its body is being read.
    const reading = new Promise<void>((resolve) =>
      server.http.once("request", (request) => request.once("resume", () => resolve()))
    )
    const stalled = await rawConnection(server.port)
    stalled.socket.write(`${chatHead(100)}{"message":"he`)
    await reading
    const response = await chat(server, { message: "hello", stream: true })
    expect(response.status).toBe(200)
    expect((await readAll(response)).at(-1)).toBe("[DONE]")
    stalled.socket.destroy()
  })

  it("disconnects a reader that stops reading, and the turn follows the disconnect rules", async () => {
    const connection = await rawConnection(slow.port)
    // Never read: the socket buffers fill and the server waits for `drain`.
    connection.socket.pause()
    const body = JSON.stringify({ message: "talk forever", stream: true })
    connection.socket.write(`${chatHead(Buffer.byteLength(body))}${body}`)
    await observer.until((seen) => seen.turnEnded.length === 1)
    expect(observer.seen.turnEnded[0]!.outcome).toBe("client_closed")
    connection.socket.destroy()
  })

  it("refuses connections past the cap with 503 and the common body", async () => {
    const first = await rawConnection(capped.port)
    const second = await rawConnection(capped.port)
    second.socket.write("GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    const response = parsed(await second.closed)
    expect(response.status).toBe(503)
    expect(response.body).toEqual({ error: { type: "unavailable", message: expect.any(String) } })
    first.socket.destroy()
  })

  it("ends keep-alive after a connection's last allowed request, and refuses more on it", async () => {
    const connection = await rawConnection(limited.port)
    const health = "GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    connection.socket.write(health)
    expect(await connection.until("\r\n\r\n{")).toContain("Connection: keep-alive")
    connection.socket.write(health)
    // The second and last answer says so (Node leaves closing the socket to the client)…
    await connection.until("Connection: close")
    // …and a request past the limit is refused.
    connection.socket.write(health)
    expect(await connection.until("HTTP/1.1 503")).toContain("HTTP/1.1 503")
    connection.socket.destroy()
  })

  it("closes a connection whose request to a static file was not read to its end", async () => {
    const connection = await rawConnection(slow.port)
    // A body announced and never sent: the connection cannot carry another request.
    connection.socket.write("GET / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000\r\n\r\nabc")
    const text = await connection.closed
    expect(text.startsWith("HTTP/1.1 200")).toBe(true)
    expect(text.toLowerCase()).toContain("connection: close")
  })
})
