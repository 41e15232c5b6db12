import { NodeRedis } from "@effect/platform-node"
import { Effect, ManagedRuntime } from "effect"
import { Redis } from "effect/persistence"

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
