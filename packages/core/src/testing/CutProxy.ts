/**
 * A TCP proxy that drops a client's connection at an exact point of an SSE
 * stream, as a phone changing cells or a headset leaving Wi-Fi would: for
 * tests of resuming clients and servers.
 *
 * @since 0.3.0
 */
import * as Net from "node:net"

/** Options of `make`. */
export interface Options {
  /**
   * Drop the connection once this many SSE frames (each ending with a blank
   * line) have passed to the client, and `extraBytes` more after them: the
   * start of the next frame, or of its HTTP chunk. Without it the proxy
   * forwards until `cut` is called.
   */
  readonly cutAfterFrames?: number | undefined
  readonly extraBytes?: number | undefined
}

/** A proxy between a client and one server. */
export interface CutProxy {
  /** Its base URL: send the client here instead of to the server. */
  readonly url: string
  /**
   * Drops every connection now: the client's with a reset, the server's
   * closed as a vanished client's would be. Connections made after it are
   * dropped as soon as they are accepted.
   */
  readonly cut: () => void
  /**
   * Lets connections made from now on through again, and arms the configured
   * cut point afresh for them: the network came back, and may drop again.
   */
  readonly heal: () => void
  /** Resolves once the proxy has cut, by `cut` or at the configured point (since the last `heal`). */
  readonly cutDone: Promise<void>
  /** Stops listening, dropping every connection. */
  readonly close: () => Promise<void>
}

const LF = 0x0a

/**
 * Starts a loopback proxy to the server at `target`. Frames are counted in
 * the raw bytes of the response: a frame ends with `\n\n`, which neither the
 * HTTP head (`\r\n`) nor the chunked encoding's framing contain.
 */
export const make = async (target: string, options: Options = {}): Promise<CutProxy> => {
  const { hostname, port } = new URL(target)
  const clients = new Set<Net.Socket>()
  const upstreams = new Set<Net.Socket>()
  let isCut = false
  // Set while the bytes before the configured point are still on their way: nothing more passes.
  let holding = false
  let signalCut: () => void = () => undefined
  let cutDone = new Promise<void>((resolve) => {
    signalCut = resolve
  })
  const heal = () => {
    isCut = false
    holding = false
    cutDone = new Promise<void>((resolve) => {
      signalCut = resolve
    })
  }
  const cut = () => {
    if (isCut) return
    isCut = true
    for (const client of clients) client.resetAndDestroy()
    for (const upstream of upstreams) upstream.destroy()
    signalCut()
  }

  const server = Net.createServer({ noDelay: true }, (client) => {
    client.on("error", () => undefined)
    if (isCut) {
      client.resetAndDestroy()
      return
    }
    const upstream = Net.connect({ host: hostname, port: Number(port), noDelay: true })
    upstream.on("error", () => undefined)
    clients.add(client)
    upstreams.add(upstream)
    client.on("data", (chunk: Buffer) => {
      if (!isCut && !holding) upstream.write(chunk)
    })
    // A close on either side closes the other, as a network would.
    client.on("close", () => upstream.destroy())
    upstream.on("close", () => client.destroy())

    let frames = 0
    let previous = 0
    // Bytes still to pass once the frames are counted; `undefined` before.
    let remaining: number | undefined
    upstream.on("data", (chunk: Buffer) => {
      if (isCut || holding) return
      if (options.cutAfterFrames === undefined) {
        client.write(chunk)
        return
      }
      // How much of this chunk passes.
      let take = remaining === undefined ? chunk.length : 0
      if (remaining === undefined) {
        for (let index = 0; index < chunk.length; index++) {
          const byte = chunk[index]!
          if (byte === LF && previous === LF) frames++
          previous = byte
          if (frames === options.cutAfterFrames) {
            remaining = options.extraBytes ?? 0
            take = index + 1
            break
          }
        }
      }
      if (remaining !== undefined) {
        const extra = Math.min(chunk.length - take, remaining)
        take += extra
        remaining -= extra
      }
      if (remaining !== 0) {
        client.write(chunk)
        return
      }
      // Nothing more passes; the cut waits until the kernel has the bytes that did.
      holding = true
      client.write(chunk.subarray(0, take), () => cut())
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject)
      resolve()
    })
  })
  const address = server.address() as Net.AddressInfo
  let closing: Promise<void> | undefined
  return {
    url: `http://127.0.0.1:${address.port}`,
    cut,
    heal,
    get cutDone() {
      return cutDone
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        cut()
        server.close(() => resolve())
      }))
  }
}
