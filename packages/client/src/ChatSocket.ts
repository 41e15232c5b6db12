/**
 * The WebSocket transport's connection (`transport: "websocket"`): one socket
 * per client, opened when a request needs it and shared by every turn, which
 * it tells apart by a `request_id` of its own making (see the protocol in
 * `docs/websocket.md`). It answers the server's JSON `ping`, pings a quiet
 * link itself while requests are in flight, and when the socket drops it
 * fails every request on it with `ConvokeNetworkError`: each reply then
 * resumes on the next socket, as an SSE reply does on a new request.
 */
import { ConvokeAbortError, ConvokeNetworkError } from "./ConvokeError.ts"

/** The path of the WebSocket endpoint of the v0.3 API. */
export const SOCKET_PATH = "/api/v0.3/ws"

/** Where a browser gets a single-use ticket for the WebSocket endpoint. */
export const TICKET_PATH = "/api/v0.3/ws/ticket"

/** What the client needs of a WebSocket: the browser's, Node's (≥ 22) or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void
}

/**
 * A WebSocket class. The client calls it as `new WebSocket(url)`, or as
 * `new WebSocket(url, { headers })` to send credentials on the upgrade, as
 * Node's global `WebSocket` and the `ws` package allow (browsers do not).
 */
export type WebSocketConstructor = new (url: string, options?: any) => WebSocketLike

/** Where to open a socket, and the headers of its upgrade request (none in browsers). */
export interface Target {
  readonly url: string
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/** A frame from the server: a turn's event with the `request_id` it answers, or an answer of its own. */
export interface Frame {
  readonly type: string
  readonly request_id?: string
  readonly [field: string]: unknown
}

/** What the socket needs from the client. */
export interface SocketOptions {
  readonly WebSocket: WebSocketConstructor
  /** Where to connect, asked anew for each socket (a browser's ticket is good for one). */
  readonly target: () => Promise<Target>
  /**
   * Called when a socket could not be opened, to find out why: rejects with
   * the server's HTTP refusal (401, 403, 429, …) if that was the cause.
   */
  readonly diagnose: () => Promise<void>
  /**
   * While requests are in flight, a link quiet this long gets a `ping`, and
   * one still quiet after as long again is given up (`0`: never).
   */
  readonly heartbeatMs: number
}

/** One request in flight on a socket: it gets every frame naming its id. */
interface Exchange {
  readonly frame: (frame: Frame) => void
  readonly drop: (error: unknown) => void
}

const OPEN = 1

/** One WebSocket and the requests in flight on it. */
class Connection {
  /** Resolves `true` once the socket is open, `false` if it closed first. */
  readonly opened: Promise<boolean>
  /** Why the socket closed, once it has. */
  closedWith: unknown
  readonly #socket: WebSocketLike
  readonly #exchanges = new Map<string, Exchange>()
  #timer: ReturnType<typeof setInterval> | undefined
  #heard = false
  #pinged = false

  constructor(socket: WebSocketLike, heartbeatMs: number) {
    this.#socket = socket
    this.opened = new Promise<boolean>((resolve) => {
      socket.addEventListener("open", () => resolve(true))
      // An `error` event is always followed by `close`.
      socket.addEventListener("close", (event: { code?: number; reason?: string }) => {
        resolve(false)
        const reason = event.reason ? ` ${event.reason}` : ""
        this.drop(new ConvokeNetworkError(`The WebSocket closed (${event.code ?? 1006}${reason})`))
      })
    })
    socket.addEventListener("message", (event: { data: unknown }) => this.#receive(event.data))
    if (heartbeatMs > 0) {
      this.#timer = setInterval(() => this.#beat(), heartbeatMs)
      // A heartbeat alone does not keep a Node process running.
      ;(this.#timer as { unref?: () => void }).unref?.()
    }
  }

  /** Sends a frame; a socket that is not open drops every request at once. */
  send(frame: Record<string, unknown>): void {
    if (this.closedWith !== undefined) return
    if (this.#socket.readyState !== OPEN) {
      this.drop(new ConvokeNetworkError("The WebSocket is not open"))
      return
    }
    this.#socket.send(JSON.stringify(frame))
  }

  /** Routes the frames naming `requestId` to `exchange` (replacing any before); a closed socket drops it at once. */
  register(requestId: string, exchange: Exchange): void {
    if (this.closedWith === undefined) this.#exchanges.set(requestId, exchange)
    else exchange.drop(this.closedWith)
  }

  /** Frames naming `requestId` are ignored from now on. */
  release(requestId: string): void {
    this.#exchanges.delete(requestId)
  }

  /** Closes the socket, failing every request in flight with `error`. */
  drop(error: unknown, code = 1000, reason = ""): void {
    if (this.closedWith !== undefined) return
    this.closedWith = error
    clearInterval(this.#timer)
    const exchanges = [...this.#exchanges.values()]
    this.#exchanges.clear()
    try {
      this.#socket.close(code, reason)
    } catch {
      // Already closing.
    }
    for (const exchange of exchanges) exchange.drop(error)
  }

  #receive(data: unknown): void {
    this.#heard = true
    this.#pinged = false
    if (typeof data !== "string") return
    let frame: Frame
    try {
      frame = JSON.parse(data)
    } catch {
      return
    }
    if (typeof frame?.type !== "string") return
    if (frame.type === "ping") {
      this.send({ type: "pong" })
      return
    }
    // `pong`, and answers without a request id (the answer to a stop sent on behalf of an aborted turn).
    if (typeof frame.request_id !== "string") return
    this.#exchanges.get(frame.request_id)?.frame(frame)
  }

  #beat(): void {
    if (this.#heard || this.#exchanges.size === 0) {
      this.#heard = false
      this.#pinged = false
      return
    }
    if (!this.#pinged) {
      this.#pinged = true
      this.send({ type: "ping" })
      return
    }
    this.drop(new ConvokeNetworkError("The WebSocket did not answer a ping"), 4000, "no pong")
  }
}

/** Resolves like `promise`, or rejects with the signal's reason once it aborts. */
const abortable = <A>(promise: Promise<A>, signal: AbortSignal | undefined): Promise<A> => {
  if (signal === undefined) return promise
  return new Promise<A>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const onAbort = () => reject(signal.reason)
    signal.addEventListener("abort", onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort)
        reject(error)
      }
    )
  })
}

/** The client's WebSocket; not part of the public surface. */
export class ChatSocket {
  readonly #options: SocketOptions
  #connection: Promise<Connection> | undefined
  /** The socket `#connection` opened, once open. */
  #current: Connection | undefined
  #ids = 0

  constructor(options: SocketOptions) {
    this.#options = options
  }

  /**
   * Sends `frame` with a new request id, opening the socket first if there is
   * none, and hands every frame that answers it to `onFrame` until `onFrame`
   * returns something other than `undefined`: the request's result. Rejects
   * with what `onFrame` throws, with `ConvokeNetworkError` when the socket
   * drops (or cannot open), with the server's HTTP refusal of the socket, or
   * with the signal's reason when it aborts.
   *
   * A `chat.send` aborted before its metadata frame is stopped as soon as
   * that frame arrives, so an aborted message leaves no reply running.
   */
  async request<A>(
    frame: Record<string, unknown>,
    onFrame: (frame: Frame) => A | undefined,
    signal?: AbortSignal
  ): Promise<A> {
    const connection = await abortable(this.#connect(), signal)
    const requestId = `${String(frame.type).replace(/^chat\./, "")}-${++this.#ids}`
    return new Promise<A>((resolve, reject) => {
      let started = false
      const settle = () => {
        signal?.removeEventListener("abort", onAbort)
        connection.release(requestId)
      }
      const onAbort = () => {
        settle()
        if (frame.type === "chat.send" && !started) {
          connection.register(requestId, {
            frame: (answer) => {
              if (answer.type === "metadata") {
                connection.send({ type: "chat.stop", conversation_id: answer.conversation_id })
              }
              if (answer.type === "done" || (answer.type === "error" && answer.status !== undefined)) {
                connection.release(requestId)
              }
            },
            drop: () => {}
          })
        }
        reject(signal!.reason)
      }
      if (signal?.aborted) return onAbort()
      signal?.addEventListener("abort", onAbort, { once: true })
      connection.register(requestId, {
        frame: (answer) => {
          if (answer.type === "metadata") started = true
          let result: A | undefined
          try {
            result = onFrame(answer)
          } catch (error) {
            settle()
            return reject(error)
          }
          if (result === undefined) return
          settle()
          resolve(result)
        },
        drop: (error) => {
          signal?.removeEventListener("abort", onAbort)
          reject(error)
        }
      })
      connection.send({ ...frame, request_id: requestId })
    })
  }

  /**
   * Closes the socket, if one is open: requests in flight on it fail with
   * `ConvokeAbortError`. The next request opens a new socket.
   */
  close(): void {
    const connection = this.#connection
    this.#connection = undefined
    this.#current = undefined
    connection?.then(
      (open) => open.drop(new ConvokeAbortError(), 1000, "client closed"),
      () => {}
    )
  }

  #connect(): Promise<Connection> {
    // A socket that closed is forgotten: the next request opens a new one.
    if (this.#connection === undefined || this.#current?.closedWith !== undefined) {
      this.#current = undefined
      const opening: Promise<Connection> = this.#open().then((connection) => {
        if (this.#connection === opening) this.#current = connection
        return connection
      })
      this.#connection = opening
      opening.catch(() => {
        if (this.#connection === opening) this.#connection = undefined
      })
    }
    return this.#connection
  }

  async #open(): Promise<Connection> {
    const target = await this.#options.target()
    const WebSocket = this.#options.WebSocket
    const socket =
      target.headers === undefined
        ? new WebSocket(target.url)
        : new WebSocket(target.url, { headers: target.headers })
    const connection = new Connection(socket, this.#options.heartbeatMs)
    if (await connection.opened) return connection
    // A WebSocket does not say why it could not open: ask the server over HTTP.
    await this.#options.diagnose()
    throw new ConvokeNetworkError("The WebSocket could not be opened")
  }
}
