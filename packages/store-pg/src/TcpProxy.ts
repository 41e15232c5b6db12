/**
 * A loopback TCP proxy a test controls, for injecting network faults between
 * a client and a server (e.g. Convoke and PostgreSQL) without stopping the
 * server.
 *
 * The proxy is in one of three modes:
 *
 * - `forwarding` (the start): every connection is relayed to the target.
 * - `cut`: every open connection is destroyed at once, and new ones are reset
 *   as soon as they are accepted. Clients fail fast (`ECONNRESET`), as when a
 *   database restarts or a firewall rejects.
 * - `blackholed`: connections are still accepted, but nothing passes in
 *   either direction on open or new connections — bytes are swallowed and no
 *   close is relayed. Clients hang until their own timeouts fire, as on a
 *   network partition or a dead host.
 *
 * `restore` forwards again. Connections that lived through a blackhole have
 * lost bytes in the middle of a protocol exchange and can never be used
 * safely again, so `restore` destroys them: their clients see a closed socket
 * and reconnect through the proxy, which now forwards.
 *
 * Reachable as `makeTcpProxy` from `@convoke/store-pg/testing`.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"

/** Options of `makeTcpProxy`. */
export interface Options {
  /** The host to forward to, e.g. `127.0.0.1`. */
  readonly targetHost: string
  /** The port to forward to, e.g. `5432`. */
  readonly targetPort: number
  /** The loopback address to listen on (default `127.0.0.1`). */
  readonly host?: string | undefined
}

/** What the proxy does with connections; see the module documentation. */
export type Mode = "forwarding" | "cut" | "blackholed"

/** A running proxy. */
export interface TcpProxy {
  /** The address it listens on. */
  readonly host: string
  /** The port it listens on, chosen by the operating system. */
  readonly port: number
  /** The current mode. */
  readonly mode: () => Mode
  /** How many client connections are open right now. */
  readonly openConnections: () => number
  /** How many client connections it has accepted since it started. */
  readonly acceptedConnections: () => number
  /** Destroys every open connection and resets new ones until `restore`. */
  readonly cut: () => void
  /** Swallows all bytes on open and new connections until `restore`. */
  readonly blackhole: () => void
  /** Forwards again; destroys the connections that lived through a blackhole. */
  readonly restore: () => void
  /** Stops listening and destroys every connection. Safe to call twice. */
  readonly close: () => Promise<void>
}

interface Pair {
  readonly client: Net.Socket
  upstream: Net.Socket | undefined
  /** Bytes were swallowed on this connection; it is destroyed on `restore`. */
  blackholed: boolean
}

/**
 * Starts a proxy on a loopback port that forwards to `targetHost:targetPort`.
 * Use one per test file; point the client at its `host` and `port`, and
 * `close` it in the matching after-hook.
 */
export const makeTcpProxy = async (options: Options): Promise<TcpProxy> => {
  let mode: Mode = "forwarding"
  let accepted = 0
  const pairs = new Set<Pair>()

  const destroy = (pair: Pair): void => {
    pairs.delete(pair)
    pair.client.destroy()
    pair.upstream?.destroy()
  }

  /** Relays `from` to `to` while the pair forwards, with back-pressure. */
  const relay = (pair: Pair, from: Net.Socket, to: () => Net.Socket | undefined): void => {
    from.on("data", (chunk) => {
      const target = to()
      if (pair.blackholed || target === undefined) return
      if (!target.write(chunk)) {
        from.pause()
        target.once("drain", () => from.resume())
      }
    })
    // A close is relayed only while forwarding: a blackhole answers nothing.
    from.on("close", () => {
      if (!pair.blackholed) destroy(pair)
    })
    from.on("error", () => {
      if (!pair.blackholed) destroy(pair)
    })
  }

  const server = Net.createServer({ noDelay: true }, (client) => {
    accepted++
    client.on("error", () => undefined)
    if (mode === "cut") {
      client.resetAndDestroy()
      return
    }
    const pair: Pair = { client, upstream: undefined, blackholed: mode === "blackholed" }
    pairs.add(pair)
    if (!pair.blackholed) {
      const upstream = Net.connect({ host: options.targetHost, port: options.targetPort, noDelay: true })
      pair.upstream = upstream
      relay(pair, upstream, () => pair.client)
    }
    relay(pair, client, () => pair.upstream)
  })

  const host = options.host ?? "127.0.0.1"
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, host, () => {
      server.off("error", reject)
      resolve()
    })
  })
  const address = server.address() as Net.AddressInfo

  let closing: Promise<void> | undefined
  return {
    host,
    port: address.port,
    mode: () => mode,
    openConnections: () => pairs.size,
    acceptedConnections: () => accepted,
    cut: () => {
      mode = "cut"
      for (const pair of [...pairs]) {
        pair.client.resetAndDestroy()
        destroy(pair)
      }
    },
    blackhole: () => {
      mode = "blackholed"
      for (const pair of pairs) pair.blackholed = true
    },
    restore: () => {
      mode = "forwarding"
      for (const pair of [...pairs]) if (pair.blackholed) destroy(pair)
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        mode = "cut"
        for (const pair of [...pairs]) destroy(pair)
        server.close(() => resolve())
      }))
  }
}
