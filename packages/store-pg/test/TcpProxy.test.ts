import { once } from "node:events"
import * as Net from "node:net"
import * as PgTesting from "@convoke/store-pg/testing"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"

// Skipped on a machine without the test PostgreSQL server; under CI its absence fails the run.
const reachable = await PgTesting.requireServer(it)

/** A loopback echo server that records what reaches it. */
const makeEchoServer = async () => {
  const received: Array<string> = []
  let accepted = 0
  const sockets = new Set<Net.Socket>()
  const server = Net.createServer((socket) => {
    accepted++
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    socket.on("error", () => undefined)
    socket.on("data", (chunk) => {
      received.push(chunk.toString())
      socket.write(chunk)
    })
  })
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  return {
    port: (server.address() as Net.AddressInfo).port,
    received,
    accepted: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, "close")
    }
  }
}

const connect = async (proxy: PgTesting.TcpProxy) => {
  const socket = Net.connect({ host: proxy.host, port: proxy.port })
  socket.on("error", () => undefined)
  await once(socket, "connect")
  return socket
}

/** Resolves when the socket closes, whether cleanly or by a reset. */
const closed = (socket: Net.Socket): Promise<void> =>
  new Promise((resolve) => socket.once("close", () => resolve()))

const echo = async (socket: Net.Socket, text: string): Promise<string> => {
  socket.write(text)
  const [chunk] = (await once(socket, "data")) as [Buffer]
  return chunk.toString()
}

describe("makeTcpProxy", () => {
  let upstream: Awaited<ReturnType<typeof makeEchoServer>>
  let proxy: PgTesting.TcpProxy
  beforeAll(async () => {
    upstream = await makeEchoServer()
    proxy = await PgTesting.makeTcpProxy({ targetHost: "127.0.0.1", targetPort: upstream.port })
  })
  afterAll(async () => {
    await proxy.close()
    await upstream.close()
  })

  it("forwards in both directions, and cut closes open connections and new ones", async () => {
    proxy.restore()
    const socket = await connect(proxy)
    expect(await echo(socket, "hello")).toBe("hello")
    expect(proxy.openConnections()).toBe(1)

    const socketClosed = closed(socket)
    proxy.cut()
    expect(proxy.mode()).toBe("cut")
    await socketClosed
    expect(proxy.openConnections()).toBe(0)

    const refused = Net.connect({ host: proxy.host, port: proxy.port })
    refused.on("error", () => undefined)
    const acceptedBefore = upstream.accepted()
    await closed(refused)
    expect(upstream.accepted()).toBe(acceptedBefore)

    proxy.restore()
    const again = await connect(proxy)
    expect(await echo(again, "back")).toBe("back")
    again.destroy()
  })

  it("blackhole swallows bytes on open and new connections; restore closes them and forwards new ones", async () => {
    proxy.restore()
    const open = await connect(proxy)
    expect(await echo(open, "before")).toBe("before")
    const openClosed = closed(open)
    const acceptedUpstream = upstream.accepted()

    proxy.blackhole()
    open.write("lost-on-open")
    const accepted = proxy.acceptedConnections()
    const fresh = await connect(proxy)
    const freshClosed = closed(fresh)
    fresh.write("lost-on-new")
    // The proxy accepted the new connection but never opened one upstream.
    while (proxy.acceptedConnections() === accepted) await new Promise((resolve) => setImmediate(resolve))
    expect(upstream.accepted()).toBe(acceptedUpstream)

    proxy.restore()
    await Promise.all([openClosed, freshClosed])
    const after = await connect(proxy)
    expect(await echo(after, "after")).toBe("after")
    after.destroy()
    expect(upstream.received.join("")).not.toContain("lost")
  })

  it("close stops listening and is safe to call twice", async () => {
    const extra = await PgTesting.makeTcpProxy({ targetHost: "127.0.0.1", targetPort: upstream.port })
    const socket = await connect(extra)
    const socketClosed = closed(socket)
    await extra.close()
    await extra.close()
    await socketClosed
    const late = Net.connect({ host: extra.host, port: extra.port })
    const [error] = (await once(late, "error")) as [NodeJS.ErrnoException]
    expect(error.code).toBe("ECONNREFUSED")
  })
})

// Needs the PostgreSQL server of the test machines (see `reachable`).
describe.skipIf(!reachable)("a PgClient through makeTcpProxy", () => {
  let database: PgTesting.TestDatabase | undefined
  let proxy: PgTesting.TcpProxy | undefined
  beforeAll(async () => {
    database = await PgTesting.makeTestDatabase()
    const admin = new URL(PgTesting.adminUrl())
    proxy = await PgTesting.makeTcpProxy({
      targetHost: admin.hostname,
      targetPort: Number(admin.port || 5432)
    })
  })
  afterAll(async () => {
    await proxy?.close()
    await database?.drop()
  })

  const clientLayer = () => {
    const url = new URL(database!.url)
    return PgClient.layer({
      host: proxy!.host,
      port: proxy!.port,
      username: decodeURIComponent(url.username),
      database: database!.name,
      maxConnections: 2,
      // Shorter than the callers' own timeouts, so a connection attempt made
      // during an outage fails its caller instead of lingering in the pool.
      connectTimeout: "1 second"
    })
  }

  /** Why a query failed: `sql` (the driver gave up) or `timeout` (the caller did). */
  const failure = (exit: Exit.Exit<unknown, unknown>) => {
    if (Exit.isSuccess(exit)) return "success"
    const error = Cause.squash(exit.cause) as { readonly _tag?: string }
    return error._tag === "TimeoutError" ? "timeout" : error._tag === "SqlError" ? "sql" : String(error._tag)
  }

  it.live(
    "queries work, fail fast when cut, hang when blackholed, and work again after restore",
    () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const select = sql<{ readonly one: number }>`SELECT 1::int4 AS one`.withoutTransform
        // A guard long enough never to fire when the driver fails on its own.
        const guarded = Effect.exit(Effect.timeout(select, "30 seconds"))

        expect(yield* select).toEqual([{ one: 1 }])
        expect(proxy!.acceptedConnections()).toBeGreaterThan(0)

        proxy!.cut()
        // The open connection is reset, then a new one is refused: both fail
        // with the driver's own error, not the guard's timeout.
        expect(failure(yield* guarded)).toBe("sql")
        expect(failure(yield* guarded)).toBe("sql")

        proxy!.restore()
        expect(yield* select).toEqual([{ one: 1 }])

        proxy!.blackhole()
        // The open connection gets no answer: only the caller's timeout ends it.
        expect(failure(yield* Effect.exit(Effect.timeout(select, "1 second")))).toBe("timeout")
        // A new connection gets no answer either; the connect timeout ends it.
        expect(failure(yield* guarded)).toBe("sql")

        const accepted = proxy!.acceptedConnections()
        proxy!.restore()
        // Same client, no restart: the pool replaces the dead connections.
        expect(yield* select).toEqual([{ one: 1 }])
        expect(yield* select).toEqual([{ one: 1 }])
        expect(proxy!.acceptedConnections()).toBeGreaterThan(accepted)
      }).pipe(Effect.provide(Layer.fresh(clientLayer()))),
    60_000
  )
})
