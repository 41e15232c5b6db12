/**
 * A raw TCP connection to a test server, for writing requests byte by byte
 * (slow clients) and reading whatever comes back until the server closes.
 */
import { connect, type Socket } from "node:net"

/** An open connection: the socket, and everything received once the server has closed it. */
export interface RawConnection {
  readonly socket: Socket
  /** Resolves with every byte received, as text, once the connection is closed (by either side). */
  readonly closed: Promise<string>
  /** Resolves with what was received so far once it contains `text`; rejects if the connection closes first. */
  readonly until: (text: string) => Promise<string>
}

/** Connects to `127.0.0.1:port`; resolves once connected. */
export const rawConnection = (port: number): Promise<RawConnection> =>
  new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    let received = ""
    const waiting = new Set<() => void>()
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => {
      received += chunk
      for (const check of waiting) check()
    })
    const closed = new Promise<string>((done) => {
      socket.once("close", () => {
        done(received)
        for (const check of waiting) check()
      })
    })
    const until = (text: string) =>
      new Promise<string>((done, fail) => {
        const check = () => {
          if (received.includes(text)) {
            waiting.delete(check)
            done(received)
          } else if (socket.destroyed) {
            waiting.delete(check)
            fail(new Error(`closed before ${JSON.stringify(text)} arrived; got ${JSON.stringify(received)}`))
          }
        }
        waiting.add(check)
        check()
      })
    // A reset after the response (the server destroying the socket) is still a close.
    socket.on("error", () => {})
    socket.once("connect", () => {
      socket.off("error", reject)
      resolve({ socket, closed, until })
    })
    socket.once("error", reject)
  })
