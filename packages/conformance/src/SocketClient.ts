/**
 * A WebSocket client for the suite's tests of `GET /api/v0.3/ws`: frames
 * are parsed as they arrive and kept, so a test waits for the frame it
 * expects (a signal), never for a time.
 *
 * @since 0.3.0
 */
import WebSocket from "ws"

/** A refused upgrade: the HTTP answer the server gave instead of a socket. */
export interface Refusal {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

/** An open socket under test. */
export interface SocketClient {
  /** Sends a frame: JSON unless a string. */
  readonly send: (frame: unknown) => void
  /** Sends raw data as a binary frame. */
  readonly sendBinary: (data: Uint8Array) => void
  /** The next frame (in arrival order) that matches, waiting for it; frames before it that match nothing stay kept. */
  readonly next: (match?: (frame: Record<string, any>) => boolean) => Promise<Record<string, any>>
  /** Every frame of a request, in order, to its `done` (or a pre-start `error`). */
  readonly turn: (requestId: string) => Promise<Array<Record<string, any>>>
  /** Resolves with the close code and reason once the socket is closed. */
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>
  readonly close: (code?: number) => void
  /** Drops the TCP connection without a close frame. */
  readonly drop: () => void
  readonly raw: WebSocket
}

/** The `ws:` URL of a binding's socket route. */
export const socketUrl = (base: string, query = ""): string =>
  `${base.replace(/^http/, "ws")}/api/v0.3/ws${query === "" ? "" : `?${query}`}`

/** Opens a socket; rejects with the `Refusal` when the server answers the upgrade with HTTP. */
export const open = (
  url: string,
  headers: Record<string, string> = {},
  options: { readonly maxPayload?: number } = {}
): Promise<SocketClient> =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers, maxPayload: options.maxPayload ?? 64 * 1024 * 1024 })
    const kept: Array<Record<string, any>> = []
    const waiters: Array<{ match: (frame: Record<string, any>) => boolean; resolve: (frame: any) => void }> =
      []
    let closeResult!: (value: { code: number; reason: string }) => void
    const closed = new Promise<{ code: number; reason: string }>((done) => {
      closeResult = done
    })
    socket.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Record<string, any>
      const index = waiters.findIndex((waiter) => waiter.match(frame))
      if (index === -1) kept.push(frame)
      else waiters.splice(index, 1)[0]!.resolve(frame)
    })
    socket.on("close", (code, reason) => closeResult({ code, reason: String(reason) }))
    socket.on("error", (error) => reject(error))
    socket.on("unexpected-response", (_request, response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        body += chunk
      })
      response.on("end", () => {
        reject({ status: response.statusCode ?? 0, headers: response.headers, body } satisfies Refusal)
      })
    })
    const next: SocketClient["next"] = (match = () => true) => {
      const index = kept.findIndex(match)
      if (index !== -1) return Promise.resolve(kept.splice(index, 1)[0]!)
      return new Promise((done) => waiters.push({ match, resolve: done }))
    }
    socket.on("open", () =>
      resolve({
        send: (frame) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
        sendBinary: (data) => socket.send(data, { binary: true }),
        next,
        turn: async (requestId) => {
          const frames: Array<Record<string, any>> = []
          while (true) {
            const frame = await next((candidate) => candidate.request_id === requestId)
            frames.push(frame)
            if (frame.type === "done" || (frame.type === "error" && frame.status !== undefined)) return frames
          }
        },
        closed,
        close: (code = 1000) => socket.close(code),
        drop: () => socket.terminate(),
        raw: socket
      })
    )
  })

/** The refusal of an upgrade that was expected to fail. */
export const refusal = async (opening: Promise<SocketClient>): Promise<Refusal> => {
  try {
    const socket = await opening
    socket.close()
  } catch (error) {
    if (typeof error === "object" && error !== null && "status" in error) return error as Refusal
    throw error
  }
  throw new Error("The upgrade was accepted")
}
