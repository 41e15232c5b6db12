/**
 * A slowloris run against the reference server: hundreds of connections that
 * trickle a request head a byte at a time and never finish it, while a normal
 * client streams a chat. The chat completes, and once the attackers leave the
 * server holds none of their sockets.
 *
 * How fast the chat is under attack (its first event against the idle value)
 * is a wall-clock comparison: it is measured by the `slowloris` scenario of
 * `apps/bench`, not asserted here.
 */
import type { Socket } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.ts"
import { startServer } from "./helpers.ts"
import { type RawConnection, rawConnection } from "./rawSocket.ts"

const ATTACKERS = 200
/** Each attacker sends one more byte of its head this often. */
const TRICKLE_MS = 300

let server: RunningServer

beforeAll(async () => {
  server = await startServer({ shutdownGraceMs: 100 })
})

afterAll(async () => {
  await server?.close()
})

/** Resolves with the number of open connections of the server. */
const connections = () =>
  new Promise<number>((resolve, reject) =>
    server.http.getConnections((error, count) => (error ? reject(error) : resolve(count)))
  )

/**
 * A streamed chat over a raw connection: resolves with the response once its
 * last chunk is in. (An SSE response keeps its connection alive, as the
 * contract's `Connection: keep-alive` says, so the socket stays open.)
 */
const streamChat = async (connection: RawConnection): Promise<string> => {
  const body = JSON.stringify({ message: "still here under attack", stream: true })
  connection.socket.write(
    `POST /api/v0.3/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  )
  return connection.until("data: [DONE]\n\n\r\n0\r\n\r\n")
}

describe("slowloris", () => {
  it("keeps serving a chat while hundreds of connections trickle heads, and keeps none of them after", async () => {
    // The server's side of each connection, to see it closed.
    const serverSides: Array<Promise<void>> = []
    const onConnection = (socket: Socket) => {
      serverSides.push(new Promise((resolve) => socket.once("close", () => resolve())))
    }
    server.http.on("connection", onConnection)
    const attackers: Array<RawConnection> = []
    for (let index = 0; index < ATTACKERS; index++) {
      const attacker = await rawConnection(server.port)
      attacker.socket.write("POST /api/v0.3/chat HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
      attackers.push(attacker)
    }
    // The chat starts once every attacker has trickled a few more bytes.
    let ticks = 0
    let underWay: () => void = () => {}
    const attacking = new Promise<void>((resolve) => {
      underWay = resolve
    })
    const trickle = setInterval(() => {
      for (const attacker of attackers) if (!attacker.socket.destroyed) attacker.socket.write("a")
      if (++ticks === 3) underWay()
    }, TRICKLE_MS)
    await attacking
    const client = await rawConnection(server.port)
    try {
      const response = await streamChat(client)
      expect(response.startsWith("HTTP/1.1 200")).toBe(true)
      const metadata = response.indexOf('data: {"type":"metadata"')
      expect(metadata).toBeGreaterThan(0)
      expect(response.indexOf("data: [DONE]")).toBeGreaterThan(metadata)
    } finally {
      clearInterval(trickle)
    }
    // The attackers (and the client) leave; the server lets go of every socket.
    for (const attacker of attackers) attacker.socket.destroy()
    client.socket.destroy()
    server.http.off("connection", onConnection)
    // Every connection was seen by the server: the attackers' and the client's.
    expect(serverSides).toHaveLength(ATTACKERS + 1)
    await Promise.all(serverSides)
    expect(await connections()).toBe(0)
  })
})
