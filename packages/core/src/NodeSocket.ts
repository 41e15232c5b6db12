/**
 * The Node.js binding of the WebSocket route: a `node:http` `upgrade`
 * listener that serves the upgrade request through the application like
 * any request — the router, its guard (authentication, rate limits), the
 * error mapping — with the upgrade itself (`SocketHttp.SocketUpgrade`) done
 * by the `ws` library. A refused upgrade gets an ordinary HTTP answer with
 * the common error body, written on the raw socket, and no WebSocket.
 *
 * `ws` owns the wire: framing, masking, UTF-8 validation (1007), the frame
 * size limit (1009), ping and pong. The protocol is `ChatSocket`'s.
 *
 * @since 0.3.0
 */
import type { IncomingMessage, OutgoingHttpHeaders, Server } from "node:http"
import type { Duplex } from "node:stream"
import { Writable } from "node:stream"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { WebSocket } from "ws"
import type * as ChatSocket from "./ChatSocket.ts"
import * as NodeHandler from "./NodeHandler.ts"
import * as NodeRequest from "./NodeRequest.ts"
import { SocketUpgrade } from "./SocketHttp.ts"

// Not imported: an ES import of `node:http` loads undici (see `NodeHandler`).
const { STATUS_CODES } = process.getBuiltinModule("node:http")

/**
 * `ws`, loaded at the first upgrade: a server whose clients never open a
 * WebSocket does not hold its code (about 1.5 MB resident).
 */
const webSocketServer = Effect.promise(() => import("ws").then((ws) => ws.WebSocketServer))

/** A `node:http` `upgrade` listener; resolves once the socket is closed (or the refusal written). */
export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>

/** Options of `toUpgradeHandler`. */
export interface UpgradeHandlerOptions extends NodeHandler.NodeHandlerOptions {}

/**
 * Node's HTTP server stops listening for errors on a socket it hands to
 * `upgrade` listeners: a client that resets it (after a refusal, or
 * instead of a handshake) would otherwise throw, unhandled, out of the
 * process. Its `close` ends whatever is serving it.
 */
const guardErrors = (socket: Duplex) => {
  if (!socket.listeners("error").includes(ignore)) socket.on("error", ignore)
}
const ignore = () => {}

/** Bytes a socket may hold for a slow client before its turns wait for it. */
const HIGH_WATER_BYTES = 64 * 1024

/** The common error body as a whole HTTP/1.1 response on the raw socket, which is closed after it. */
const rawResponse = (socket: Duplex, status: number, headers: OutgoingHttpHeaders): Writable => {
  const chunks: Array<Buffer> = []
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk)
      callback()
    },
    final(callback) {
      const body = Buffer.concat(chunks)
      let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n`
      for (const [name, value] of Object.entries(headers)) {
        const lower = name.toLowerCase()
        if (value === undefined || lower === "content-length" || lower === "connection") continue
        if (lower === "transfer-encoding") continue
        for (const one of Array.isArray(value) ? value : [value]) head += `${name}: ${one}\r\n`
      }
      head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`
      if (socket.writable) socket.end(Buffer.concat([Buffer.from(head, "latin1"), body]))
      else socket.destroy()
      callback()
    }
  })
}

/** Takes whatever the application writes after the socket was upgraded: nothing more goes on the wire. */
const discard = () =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback()
    }
  })

/** A `ws` socket as the session's connection: back-pressure by buffered bytes, a heartbeat by ping and pong. */
const connectionOf = (ws: WebSocket, pingIntervalMillis: number): ChatSocket.Connection => {
  const waiting: Array<() => void> = []
  const behind = () => ws.readyState === ws.OPEN && ws.bufferedAmount >= HIGH_WATER_BYTES
  // Run by each frame's callback, once it is written to the kernel (or the socket failed).
  const wake = () => {
    if (!behind()) for (const resume of waiting.splice(0)) resume()
  }
  let alive = true
  const heartbeat = setInterval(() => {
    if (!alive) {
      ws.terminate()
      return
    }
    alive = false
    ws.ping()
  }, pingIntervalMillis)
  heartbeat.unref()
  ws.on("pong", () => {
    alive = true
  })
  let receiver: ChatSocket.Receiver | undefined
  // Frames that arrive before the session listens (it starts a moment after the upgrade).
  type Frame = { readonly data: string } | { readonly binary: true }
  const early: Array<Frame> = []
  const deliver = (to: ChatSocket.Receiver, frame: Frame) => {
    if ("binary" in frame) to.binary()
    else to.text(frame.data)
  }
  let closedWith: number | undefined
  ws.on("message", (data, isBinary) => {
    alive = true
    const frame: Frame = isBinary ? { binary: true } : { data: data.toString() }
    if (receiver === undefined) early.push(frame)
    else deliver(receiver, frame)
  })
  ws.on("close", (code) => {
    clearInterval(heartbeat)
    closedWith = code
    for (const resume of waiting.splice(0)) resume()
    receiver?.closed(code)
  })
  // A protocol error (bad UTF-8, an oversized frame) closes the socket with its code; `close` follows.
  ws.on("error", () => {})
  return {
    write: (text) => {
      if (ws.readyState === ws.OPEN) ws.send(text, wake)
    },
    behind,
    caughtUp: Effect.callback<void>((resume) => {
      if (!behind()) return resume(Effect.void)
      const wakeUp = () => resume(Effect.void)
      waiting.push(wakeUp)
      return Effect.sync(() => {
        const index = waiting.indexOf(wakeUp)
        if (index !== -1) waiting.splice(index, 1)
      })
    }),
    close: (code, reason) => {
      if (ws.readyState === ws.OPEN) ws.close(code, reason)
      // A client that does not answer the closing handshake is cut off.
      setTimeout(() => ws.terminate(), 5_000).unref()
    },
    listen: (listener) => {
      receiver = listener
      for (const frame of early.splice(0)) deliver(listener, frame)
      if (closedWith !== undefined) listener.closed(closedWith)
    }
  }
}

/**
 * A `node:http` `upgrade` listener serving an application's WebSocket route
 * (`GET /api/v0.3/ws`): `server.on("upgrade", toUpgradeHandler(app))`. An
 * upgrade to a path the application does not claim is refused with 404.
 */
export const toUpgradeHandler = (
  app: NodeHandler.Servable,
  options: UpgradeHandlerOptions = {}
): UpgradeHandler => {
  const serve = NodeHandler.makeServe(app)
  return (request, socket, head) => {
    guardErrors(socket)
    let serverRequest: ReturnType<typeof NodeRequest.make>
    try {
      serverRequest = NodeRequest.make(request, { url: options.url?.(request) })
    } catch {
      socket.end(NodeHandler.rawError(400, "Invalid request target"))
      return Promise.resolve()
    }
    let upgraded = false
    // The request's side of the connection: it closes when the client leaves before the upgrade,
    // which ends the request's work. Once upgraded, the session sees the socket close itself.
    const side = discard()
    socket.once("close", () => {
      if (!upgraded) side.destroy()
    })
    const destination: NodeHandler.Destination = {
      stream: side,
      start: (status, headers) => (upgraded ? discard() : rawResponse(socket, status, headers))
    }
    const upgrade = SocketUpgrade.of({
      accept: ({ maxFrameBytes, pingInterval }) =>
        Effect.suspend(() => {
          upgraded = true
          return webSocketServer
        }).pipe(
          Effect.flatMap((WebSocketServer) =>
            Effect.callback<ChatSocket.Connection>((resume) => {
              if (socket.destroyed) return resume(Effect.interrupt)
              const gone = () => resume(Effect.interrupt)
              socket.once("close", gone)
              const server = new WebSocketServer({
                noServer: true,
                maxPayload: maxFrameBytes,
                clientTracking: false,
                perMessageDeflate: false
              })
              // A handshake `ws` refuses (checked by the route first) destroys the socket, which ends the request.
              server.handleUpgrade(request, socket, head, (ws) => {
                socket.off("close", gone)
                resume(Effect.succeed(connectionOf(ws, Duration.toMillis(pingInterval))))
              })
            })
          )
        )
    })
    return serve(serverRequest, destination, Context.make(SocketUpgrade, upgrade))
  }
}

/** Options of `attach`. */
export interface AttachOptions {
  /** The path the application is mounted under (`app.use("/chat", …)`): upgrades under it reach the application. */
  readonly prefix?: string | undefined
}

/**
 * Serves an application's WebSocket route on a `node:http` (or `https`)
 * server, for bindings whose framework does not upgrade itself (Express,
 * Fastify): an upgrade to a path the application claims, under `prefix`, is
 * served; any other is left to the server's other `upgrade` listeners.
 * Returns the function that detaches it.
 */
export const attach = (
  server: Pick<Server, "on" | "off" | "listenerCount">,
  app: NodeHandler.Servable,
  options: AttachOptions = {}
): (() => void) => {
  const prefix = (options.prefix ?? "").replace(/\/+$/, "")
  const claims = ("http" in app ? app.http : app).claims
  const pathOf = (request: IncomingMessage): string | undefined => {
    const url = request.url ?? "/"
    if (prefix === "") return url
    if (url !== prefix && !url.startsWith(`${prefix}/`) && !url.startsWith(`${prefix}?`)) return undefined
    const rest = url.slice(prefix.length)
    return rest.startsWith("/") ? rest : `/${rest}`
  }
  const handle = toUpgradeHandler(app, { url: pathOf })
  const listener = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    guardErrors(socket)
    const path = pathOf(request)
    if (path !== undefined && claims(path.split("?")[0]!)) {
      void handle(request, socket, head)
      return
    }
    // Not ours. With no other listener, nothing would ever answer it: say so and close.
    if (server.listenerCount("upgrade") === 1) socket.end(NodeHandler.rawError(404, "Not found"))
  }
  server.on("upgrade", listener)
  return () => {
    server.off("upgrade", listener)
  }
}
