/**
 * Rate limits of the chat endpoint: requests per window and chat turns in
 * flight, per user, and per client address for callers without an identity.
 *
 * The HTTP layer asks `admit` after authentication and before it touches a
 * conversation, so a refused request is a `429` that wrote nothing. An
 * admission holds one in-flight slot until `release`; the HTTP layer releases
 * it when the response ends for any reason — completion, error, or the client
 * going away. A route that reads a body counts the request (`count`) before
 * reading it and takes the slot (`acquire`) only once it is read, so uploads
 * that stall hold no slot.
 *
 * The default allows everything. `layerMemory` keeps counters in the process;
 * `layerRedis` keeps them in Redis (through `effect/persistence`'s
 * `RateLimiter` and `Redis` services), so every instance behind a load
 * balancer shares one budget.
 *
 * @since 0.1.0
 */
import { Config, Context, Duration, Effect, Fiber, Layer, Schedule } from "effect"
import { RateLimiter } from "effect/persistence"
import { wholeNumber } from "./ChatConfig.ts"
import { RateLimited } from "./ChatError.ts"
import * as ConcurrencyStore from "./ConcurrencyStore.ts"
import type { Principal } from "./Identity.ts"

/** Who a request is counted against. */
export interface Subject {
  /** The authenticated caller; absent when authentication failed. */
  readonly principal?: Principal | undefined
  /** The client's address, when the adapter knows it. */
  readonly address?: string | undefined
}

/** An admitted request: headers to send, and the in-flight slot it holds. */
export interface Admission {
  /** `RateLimit-*` headers describing the caller's remaining budget. */
  readonly headers: Readonly<Record<string, string>>
  /** Frees the in-flight slot. Safe to run more than once. */
  readonly release: Effect.Effect<void>
}

/** The rate-limit service. */
export interface Service {
  /** A short description for banners and `/health` (`none`, `memory`, `redis`). */
  readonly name: string
  /**
   * Counts one request against the subject's budget and takes an in-flight
   * slot (`count`, then `acquire`), or fails with `RateLimited`.
   */
  readonly admit: (subject: Subject) => Effect.Effect<Admission, RateLimited>
  /** Counts one request against the subject's budget; the `RateLimit-*` headers, or `RateLimited`. */
  readonly count: (subject: Subject) => Effect.Effect<Readonly<Record<string, string>>, RateLimited>
  /** Takes an in-flight slot for the subject, held until `release`, or fails with `RateLimited`. */
  readonly acquire: (subject: Subject) => Effect.Effect<Admission, RateLimited>
  /**
   * Counts a failed authentication against the address's budget, so guessing
   * credentials is throttled too; fails with `RateLimited` once it is spent.
   */
  readonly rejected: (subject: Subject) => Effect.Effect<void, RateLimited>
}

const unlimitedAdmission: Admission = { headers: {}, release: Effect.void }

/** Allows everything. */
export const unlimited: Service = {
  name: "none",
  admit: () => Effect.succeed(unlimitedAdmission),
  count: () => Effect.succeed({}),
  acquire: () => Effect.succeed(unlimitedAdmission),
  rejected: () => Effect.void
}

/** The rate limits in effect; none by default. */
export const ChatRateLimit = Context.Reference<Service>("@convoke/core/ChatRateLimit", {
  defaultValue: () => unlimited
})

/** A request budget: `limit` requests per `window`. */
export interface Budget {
  readonly limit: number
  readonly window: Duration.Input
}

/** Options of `make`, `layerMemory` and `layerRedis`. A limit of `0` (or absent) turns it off. */
export interface Options {
  /** Requests per window for each authenticated user (default 120 per minute). */
  readonly user?: Budget | undefined
  /**
   * Requests per window for each client address without an identity: anonymous
   * callers and failed authentications (default 60 per minute).
   */
  readonly address?: Budget | undefined
  /** Chat turns (streams and non-streaming replies) in flight per user (default 8). */
  readonly concurrent?: number | undefined
  /**
   * How long an in-flight slot survives without renewal, so an instance that
   * crashes gives its slots back (Redis only; default 60 s, renewed every third).
   */
  readonly leaseTtl?: Duration.Input | undefined
  /**
   * Longest wait for the counters' store (default 1 s). A store that is slower
   * or down lets the request through with a logged warning.
   */
  readonly storeTimeout?: Duration.Input | undefined
}

/** The defaults of `Options`. */
export const defaults = {
  user: { limit: 120, window: Duration.minutes(1) },
  address: { limit: 60, window: Duration.minutes(1) },
  concurrent: 8,
  leaseTtl: Duration.seconds(60),
  storeTimeout: Duration.seconds(1)
} as const

const seconds = (duration: Duration.Duration): number => Math.max(0, Math.ceil(Duration.toSeconds(duration)))

/** The `RateLimit-*` headers of a consumed budget (IETF draft `ratelimit-headers`). */
export const headersOf = (options: {
  readonly limit: number
  readonly remaining: number
  readonly resetAfter: Duration.Duration
  readonly window: Duration.Duration
}): Record<string, string> => ({
  "ratelimit-limit": String(options.limit),
  "ratelimit-remaining": String(Math.max(0, Math.floor(options.remaining))),
  "ratelimit-reset": String(seconds(options.resetAfter)),
  "ratelimit-policy": `${options.limit};w=${seconds(options.window)}`
})

/**
 * Builds the service from a `RateLimiter` (requests per window) and a
 * concurrency store (turns in flight). A store that fails — Redis down — lets
 * requests through and logs a warning: an outage of the limiter must not
 * become an outage of the chat.
 */
export const make = (
  options: Options & { readonly name: string; readonly concurrency: ConcurrencyStore.ConcurrencyStore }
): Effect.Effect<Service, never, RateLimiter.RateLimiter> =>
  Effect.gen(function* () {
    const limiter = yield* RateLimiter.RateLimiter
    const user = options.user ?? defaults.user
    const address = options.address ?? defaults.address
    const concurrent = options.concurrent ?? defaults.concurrent
    const leaseTtl = Duration.fromInputUnsafe(options.leaseTtl ?? defaults.leaseTtl)
    const store = options.concurrency
    const storeTimeout = options.storeTimeout ?? defaults.storeTimeout

    const keyOf = (subject: Subject): { readonly key: string; readonly budget: Budget } =>
      subject.principal !== undefined && subject.principal.anonymous !== true
        ? { key: `user:${subject.principal.userId}`, budget: user }
        : { key: `address:${subject.address ?? "unknown"}`, budget: address }

    const consume = (key: string, budget: Budget) => {
      const window = Duration.fromInputUnsafe(budget.window)
      return limiter.consume({ key, limit: budget.limit, window, algorithm: "fixed-window" }).pipe(
        Effect.timeout(storeTimeout),
        Effect.map((result) => headersOf({ ...result, window })),
        Effect.catch((error) =>
          error._tag === "RateLimiterError" && error.reason._tag === "RateLimitExceeded"
            ? Effect.fail(
                new RateLimited({
                  retryAfterSeconds: Math.max(1, seconds(error.reason.retryAfter)),
                  limit: budget.limit,
                  message: `Rate limit exceeded: ${budget.limit} requests per ${Duration.format(window)}`
                })
              )
            : Effect.logWarning("Rate limiter unavailable; request allowed", error).pipe(Effect.as({}))
        )
      )
    }

    const count = (subject: Subject): Effect.Effect<Record<string, string>, RateLimited> => {
      const { key, budget } = keyOf(subject)
      return budget.limit > 0 ? consume(key, budget) : Effect.succeed({})
    }

    const acquire = (
      subject: Subject,
      headers: Record<string, string> = {}
    ): Effect.Effect<Admission, RateLimited> =>
      Effect.gen(function* () {
        const { key } = keyOf(subject)
        if (concurrent <= 0) return { headers, release: Effect.void }
        const token = crypto.randomUUID()
        const acquired = yield* store.acquire(key, token, concurrent).pipe(
          Effect.timeout(storeTimeout),
          Effect.catchCause((cause) =>
            Effect.logWarning("Concurrency store unavailable; request allowed", cause).pipe(Effect.as(null))
          )
        )
        if (acquired === null) return { headers, release: Effect.void }
        if (!acquired) {
          return yield* new RateLimited({
            retryAfterSeconds: 1,
            message: `Too many chat requests in progress: at most ${concurrent} at a time`
          })
        }
        // Keep the lease alive while the turn runs; a crashed instance stops renewing.
        const renewal = yield* store
          .renew(key, token)
          .pipe(
            Effect.ignore,
            Effect.repeat(Schedule.spaced(Duration.divideUnsafe(leaseTtl, 3))),
            Effect.delay(Duration.divideUnsafe(leaseTtl, 3)),
            Effect.forkDetach
          )
        let released = false
        const release = Effect.suspend(() => {
          if (released) return Effect.void
          released = true
          return Effect.andThen(
            Fiber.interrupt(renewal),
            Effect.ignore(Effect.timeout(store.release(key, token), storeTimeout))
          )
        })
        return { headers, release }
      })

    const rejected = (subject: Subject): Effect.Effect<void, RateLimited> =>
      address.limit > 0
        ? Effect.asVoid(consume(`address:${subject.address ?? "unknown"}`, address))
        : Effect.void

    const admit = (subject: Subject): Effect.Effect<Admission, RateLimited> =>
      Effect.flatMap(count(subject), (headers) => acquire(subject, headers))

    return { name: options.name, admit, count, acquire: (subject) => acquire(subject), rejected }
  })

/** Rate limits kept in this process: right for a single instance. */
export const layerMemory = (options: Options = {}) =>
  Layer.effect(
    ChatRateLimit,
    make({ ...options, name: "memory", concurrency: ConcurrencyStore.memory() }).pipe(
      Effect.provide(RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory)))
    )
  )

/**
 * Rate limits kept in Redis, shared by every instance that uses the same
 * `prefix` (default `convoke:ratelimit:`). Provide the `Redis` service, e.g.
 * `NodeRedis.layer({ url })` from `@effect/platform-node`.
 */
export const layerRedis = (options: Options & { readonly prefix?: string | undefined } = {}) => {
  const prefix = options.prefix ?? "convoke:ratelimit:"
  return Layer.effect(
    ChatRateLimit,
    Effect.gen(function* () {
      const concurrency = yield* ConcurrencyStore.redis({
        prefix: `${prefix}inflight:`,
        leaseTtl: options.leaseTtl ?? defaults.leaseTtl
      })
      return yield* make({ ...options, name: "redis", concurrency }).pipe(
        Effect.provide(
          RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreRedis({ prefix: `${prefix}requests:` })))
        )
      )
    })
  )
}

/** The options as configuration gives them: every limit, and the key prefix of `layerRedis`. */
export interface Settings extends Options {
  readonly user: Budget
  readonly address: Budget
  readonly concurrent: number
  /** Key prefix of the counters in Redis (default `convoke:ratelimit:`); unused in memory. */
  readonly prefix: string
}

// One window for both budgets, as the reference server has always had.
const window = wholeNumber("CONVOKE_RATE_LIMIT_WINDOW_SECONDS", { min: 1, max: 86_400 }).pipe(
  Config.map(Duration.seconds),
  Config.withDefault(defaults.user.window)
)

/**
 * Where `layerMemoryConfig` and `layerRedisConfig` read the options: the
 * variables of the reference server (`CONVOKE_RATE_LIMIT_REQUESTS`,
 * `CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS`, `CONVOKE_RATE_LIMIT_WINDOW_SECONDS`,
 * `CONVOKE_RATE_LIMIT_CONCURRENT`, `CONVOKE_REDIS_PREFIX`); `0` turns a limit off.
 */
export const config = {
  user: {
    limit: wholeNumber("CONVOKE_RATE_LIMIT_REQUESTS", { min: 0, max: 1_000_000 }).pipe(
      Config.withDefault(defaults.user.limit)
    ),
    window
  },
  address: {
    limit: wholeNumber("CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS", { min: 0, max: 1_000_000 }).pipe(
      Config.withDefault(defaults.address.limit)
    ),
    window
  },
  concurrent: wholeNumber("CONVOKE_RATE_LIMIT_CONCURRENT", { min: 0, max: 10_000 }).pipe(
    Config.withDefault(defaults.concurrent)
  ),
  prefix: Config.String("CONVOKE_REDIS_PREFIX").pipe(Config.withDefault("convoke:ratelimit:"))
} satisfies Config.Wrap<Settings>

/** `layerMemory` with its options read from configuration (`config` unless given). */
export const layerMemoryConfig = (options: Config.Wrap<Options> = config) =>
  Layer.unwrap(Effect.map(Config.unwrap(options), layerMemory))

/**
 * `layerRedis` with its options read from configuration (`config`, prefix
 * included, unless given). Provide the `Redis` service as for `layerRedis`.
 */
export const layerRedisConfig = (
  options: Config.Wrap<Options & { readonly prefix?: string | undefined }> = config
) => Layer.unwrap(Effect.map(Config.unwrap(options), layerRedis))
