/**
 * Support for the turn tests: a TCP proxy that drops a client's connection
 * at an exact point of an SSE stream, a reader that keeps only the frames a
 * client received whole, and a Redis database of the test run's own.
 */
import * as Net from "node:net"
import { NodeRedis } from "@effect/platform-node"
import { Effect, ManagedRuntime } from "effect"
import { Redis } from "effect/persistence"

/** Options of `makeCutProxy`. */
export interface CutProxyOptions {
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
  /** Resolves once the proxy has cut, by `cut` or at the configured point. */
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
export const makeCutProxy = async (target: string, options: CutProxyOptions = {}): Promise<CutProxy> => {
  const { hostname, port } = new URL(target)
  const clients = new Set<Net.Socket>()
  const upstreams = new Set<Net.Socket>()
  let isCut = false
  // Set while the bytes before the configured point are still on their way: nothing more passes.
  let holding = false
  let signalCut: () => void = () => undefined
  const cutDone = new Promise<void>((resolve) => {
    signalCut = resolve
  })
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
    cutDone,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        cut()
        server.close(() => resolve())
      }))
  }
}

/** The `id:` line's value of a raw frame, if it has one. */
export const idOf = (frame: string): string | undefined => /^id: ([^\n]*)\n/.exec(frame)?.[1]

/** A raw frame's payload: without its `id:` line and `data: ` prefix. */
export const payloadOf = (frame: string): string => frame.replace(/^id: [^\n]*\n/, "").replace(/^data: /, "")

/** A raw frame's event: its JSON, or the string `[DONE]`. */
export const eventOf = (frame: string): any => {
  const payload = payloadOf(frame)
  return payload === "[DONE]" ? payload : JSON.parse(payload)
}

/** The reply text in a run of raw frames. */
export const contentOf = (frames: ReadonlyArray<string>): string =>
  frames
    .map(eventOf)
    .filter((event) => event?.type === "content")
    .map((event) => event.delta.content)
    .join("")

/** Reads a response's SSE frames as a client does, keeping only those received whole. */
export const frameReader = (response: Response) => {
  const source = response.body!.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  /** The frames received whole so far, raw (`id:` line included), without their blank line. */
  const frames: Array<string> = []
  /** The next whole frame; `undefined` when the body ended. Rejects when the connection fails. */
  const next = async (): Promise<string | undefined> => {
    for (;;) {
      const end = buffer.indexOf("\n\n")
      if (end !== -1) {
        const frame = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        frames.push(frame)
        return frame
      }
      const { done, value } = await source.read()
      if (done) return undefined
      buffer += decoder.decode(value, { stream: true })
    }
  }
  return {
    frames,
    next,
    /** The next whole frame's event (see `eventOf`); `undefined` when the body ended. */
    nextEvent: async (): Promise<any> => {
      const frame = await next()
      return frame === undefined ? undefined : eventOf(frame)
    },
    /** Reads on to the end of the body: `undefined` if it ended cleanly, else the failure. */
    rest: async (): Promise<unknown> => {
      try {
        while ((await next()) !== undefined) {}
        return undefined
      } catch (error) {
        return error
      }
    },
    /** What was received after the last whole frame: part of a frame, cut off. */
    partial: () => buffer,
    cancel: () => source.cancel().catch(() => undefined)
  }
}

const runRedis = <A>(url: string, effect: Effect.Effect<A, unknown, Redis.Redis>): Promise<A> =>
  Effect.runPromise(Effect.provide(effect, NodeRedis.layer({ url })))

/** A Redis database held by one test run. */
export interface RedisDatabase {
  /** The server's URL with the database's number, e.g. `redis://127.0.0.1:6379/7`. */
  readonly url: string
  /**
   * Resolves once the turn log in this database holds event `seq` of the
   * turn (a blocking read of its stream, whose key layout `RedisTurnLog`
   * documents). The instance running a turn writes its events to Redis in
   * the background, a few milliseconds after its own readers have them:
   * another instance knows of an event only from then on.
   */
  readonly untilLogged: (turnId: string, seq: number) => Promise<void>
  /** Deletes these keys of the database (the run's own), then lets the database go. */
  readonly release: (keys: ReadonlyArray<string>) => Promise<void>
}

/**
 * Holds one of the numbered databases 1–15 of the Redis at `url` for a test
 * run, so that instances started by other test files and runs, which share
 * key names like `convoke:turns:leases`, cannot see the run's turns (nor
 * claim them when their lease lapses). A database is held by a key in it,
 * set only if absent and expiring after `holdMillis`; the run deletes only
 * the keys it names, never the whole database.
 */
export const reserveRedisDatabase = async (
  url: string,
  options: { readonly holdMillis?: number; readonly prefix?: string } = {}
): Promise<RedisDatabase> => {
  const token = crypto.randomUUID()
  const hold = "convoke:test:held-by"
  const prefix = options.prefix ?? "convoke:turns:"
  const base = new URL(url)
  for (let database = 1; database <= 15; database++) {
    base.pathname = `/${database}`
    const candidate = base.toString()
    const held = await runRedis(
      candidate,
      Effect.gen(function* () {
        const redis = yield* Redis.Redis
        return yield* redis.send<string | null>(
          "SET",
          hold,
          token,
          "NX",
          "PX",
          String(options.holdMillis ?? 10 * 60_000)
        )
      })
    )
    if (held === null) continue
    const runtime = ManagedRuntime.make(NodeRedis.layer({ url: candidate }))
    return {
      url: candidate,
      untilLogged: (turnId, seq) =>
        runtime.runPromise(
          Effect.gen(function* () {
            const redis = yield* Redis.Redis
            // A connection of its own: the read blocks it.
            const connection = yield* redis.reserve
            const reply = yield* connection.send<unknown>(
              "XREAD",
              "BLOCK",
              "10000",
              "COUNT",
              "1",
              "STREAMS",
              `${prefix}${turnId}:events`,
              `${seq - 1}-0`
            )
            if (reply === null)
              return yield* Effect.die(new Error(`event ${seq} of turn ${turnId} was never logged`))
          }).pipe(Effect.scoped)
        ),
      release: (keys) =>
        runtime
          .runPromise(
            Effect.gen(function* () {
              const redis = yield* Redis.Redis
              if (keys.length > 0) yield* redis.send("DEL", ...keys)
              if ((yield* redis.send<string | null>("GET", hold)) === token) yield* redis.send("DEL", hold)
            })
          )
          .finally(() => runtime.dispose())
    }
  }
  throw new Error(`every database 1-15 of the Redis at ${url} is held by another test run`)
}
