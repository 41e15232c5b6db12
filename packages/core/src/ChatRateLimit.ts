/**
 * Rate limits of the API: requests per window per user, per client address
 * for anonymous callers, failed authentications per address and per key
 * prefix, and chat turns in flight per user.
 *
 * The router asks for every route that acts for a user (`ApiRouter`):
 * `beforeAuthentication` refuses an address or a key prefix that has spent
 * its budget of failed authentications before the credentials are even
 * checked, `rejected` counts a failed authentication, and `admit` counts the
 * request once the caller is known — before the route reads the body or
 * touches a conversation, so a refused request is a `429` that wrote nothing.
 * A turn holds one in-flight slot until `release`, which runs when the
 * response ends for any reason — completion, error, or the client going
 * away. A resume takes it with its admission; a chat takes it (`acquire`)
 * only once its body is read, so uploads that stall hold no slot.
 *
 * Addresses are counted by network: an IPv6 client by its /64 (the smallest
 * block a site is given, `ipv6Prefix`), an IPv4-mapped IPv6 address as the
 * IPv4 address it is.
 *
 * An application with no `ChatRateLimit` layer gets the `defaults`, in
 * memory, counted per application; `layerUnlimited` turns every limit off by
 * name. `layerMemory` keeps counters in the process, at most `maxKeys` of
 * them (idle ones are forgotten first); `layerRedis` keeps them in Redis
 * (through `effect/persistence`'s `RateLimiter` and `Redis` services), so
 * every instance behind a load balancer shares one budget.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as Schedule from "effect/Schedule"
import { wholeNumber } from "./ChatConfig.ts"
import { RateLimited } from "./ChatError.ts"
import * as ConcurrencyStore from "./ConcurrencyStore.ts"
import type { Principal } from "./Identity.ts"

/** Who a request is counted against. */
export interface Subject {
  /** The authenticated caller; absent when authentication failed or has not happened yet. */
  readonly principal?: Principal | undefined
  /** The client's address, when the adapter knows it. */
  readonly address?: string | undefined
  /**
   * The credential the request presents, so failed authentications are also
   * counted per key prefix. Only a digest of its first characters is kept.
   */
  readonly credential?: string | undefined
}

/** An admitted request: headers to send, and the in-flight slot it holds. */
export interface Admission {
  /** `RateLimit-*` headers describing the caller's remaining budget. */
  readonly headers: Readonly<Record<string, string>>
  /** Frees the in-flight slot. Safe to run more than once. */
  readonly release: Effect.Effect<void>
}

/** Options of `admit`. */
export interface AdmitOptions {
  /**
   * Whether the request is a turn that holds an in-flight slot until its
   * response ends (default `true`): chat and resume do; the conversation API
   * and stop do not, so a user with every slot taken can still stop a turn.
   */
  readonly inFlight?: boolean | undefined
}

/** The rate-limit service. */
export interface Service {
  /** A short description for banners and `/health` (`none`, `memory`, `redis`). */
  readonly name: string
  /**
   * Counts one request against the subject's budget and, unless told
   * otherwise, takes an in-flight slot; or fails with `RateLimited`.
   */
  readonly admit: (subject: Subject, options?: AdmitOptions) => Effect.Effect<Admission, RateLimited>
  /** Takes an in-flight slot for the subject, held until `release`, or fails with `RateLimited`. */
  readonly acquire: (subject: Subject) => Effect.Effect<Admission, RateLimited>
  /**
   * Fails with `RateLimited` when the subject's address or key prefix has
   * spent its budget of failed authentications: asked before the credentials
   * are checked, so a right guess after the budget is spent is refused too.
   */
  readonly beforeAuthentication: (subject: Subject) => Effect.Effect<void, RateLimited>
  /** Counts a failed authentication against the subject's address and key prefix. */
  readonly rejected: (subject: Subject) => Effect.Effect<void, RateLimited>
}

const unlimitedAdmission: Admission = { headers: {}, release: Effect.void }

/** Allows everything. Provide it with `layerUnlimited` to turn every limit off. */
export const unlimited: Service = {
  name: "none",
  admit: () => Effect.succeed(unlimitedAdmission),
  acquire: () => Effect.succeed(unlimitedAdmission),
  beforeAuthentication: () => Effect.void,
  rejected: () => Effect.void
}

/** A request budget: `limit` requests per `window`. */
export interface Budget {
  readonly limit: number
  readonly window: Duration.Input
}

/** Options of `make`, `memory`, `layerMemory` and `layerRedis`. A limit of `0` turns it off. */
export interface Options {
  /** Requests per window for each authenticated user (default 120 per minute). */
  readonly user?: Budget | undefined
  /** Requests per window for each client address of anonymous callers (default 60 per minute). */
  readonly address?: Budget | undefined
  /**
   * Failed authentications per window for each client address, and for each
   * key prefix whatever the address (default 30 per minute). Once spent,
   * requests from the address or with the prefix are refused before their
   * credentials are checked, until the window has passed.
   */
  readonly failures?: Budget | undefined
  /** Chat turns (streams and non-streaming replies, resumes) in flight per user (default 8). */
  readonly concurrent?: number | undefined
  /** IPv6 clients are counted per network of this prefix length (default 64, a site's smallest block). */
  readonly ipv6Prefix?: number | undefined
  /**
   * Most counters kept in memory (default 100 000; memory only): past it the
   * least recently used are forgotten, and counters whose window has passed
   * are dropped as new ones arrive.
   */
  readonly maxKeys?: number | undefined
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

/** The defaults of `Options`: also the limits of an application that provides none. */
export const defaults = {
  user: { limit: 120, window: Duration.minutes(1) },
  address: { limit: 60, window: Duration.minutes(1) },
  failures: { limit: 30, window: Duration.minutes(1) },
  concurrent: 8,
  ipv6Prefix: 64,
  maxKeys: 100_000,
  leaseTtl: Duration.seconds(60),
  storeTimeout: Duration.seconds(1)
} as const

/** How many leading characters of a credential name its key prefix. */
export const KEY_PREFIX_LENGTH = 16

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

/** The eight 16-bit groups of an IPv6 address, or `undefined` when it is not one. */
const ipv6Groups = (address: string): Array<number> | undefined => {
  let text = address
  // An embedded IPv4 address (`::ffff:192.0.2.1`) is two groups.
  const dotted = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  if (dotted !== null) {
    const bytes = dotted.slice(2).map(Number)
    if (bytes.some((byte) => byte > 255)) return undefined
    text = `${dotted[1]}${((bytes[0]! << 8) | bytes[1]!).toString(16)}:${((bytes[2]! << 8) | bytes[3]!).toString(16)}`
  }
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const parse = (part: string) => (part === "" ? [] : part.split(":"))
  const head = parse(halves[0]!)
  const tail = halves.length === 2 ? parse(halves[1]!) : []
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  const groups = [...head, ...Array.from({ length: halves.length === 2 ? missing : 0 }, () => "0"), ...tail]
  if (groups.some((group) => !/^[0-9a-f]{1,4}$/i.test(group))) return undefined
  return groups.map((group) => Number.parseInt(group, 16))
}

/**
 * The network a client address is counted as: an IPv4 address as itself, an
 * IPv4-mapped IPv6 address as the IPv4 address, any other IPv6 address as
 * its network of `ipv6Prefix` bits (`2001:db8:1:2::/64`). Anything else is
 * returned as given.
 */
export const addressKey = (address: string, ipv6Prefix: number = defaults.ipv6Prefix): string => {
  if (!address.includes(":")) return address
  const groups = ipv6Groups(address.replace(/%.*$/, ""))
  if (groups === undefined) return address
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join(".")
  }
  const bits = Math.min(128, Math.max(0, Math.floor(ipv6Prefix)))
  const kept = Math.ceil(bits / 16)
  const network = groups.slice(0, kept).map((group, index) => {
    const inGroup = Math.min(16, bits - index * 16)
    return (group & ((0xffff << (16 - inGroup)) & 0xffff)).toString(16)
  })
  return bits === 128 ? `${network.join(":")}/128` : `${network.join(":")}::/${bits}`
}

const sha256Hex = (text: string): Promise<string> =>
  crypto.subtle
    .digest("SHA-256", new TextEncoder().encode(text))
    .then((digest) =>
      Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("")
    )

/**
 * The counter key of a credential's prefix, or `undefined` for credentials
 * that have none worth counting: JWTs, whose first characters every token
 * shares. Only a digest is kept, never the characters.
 */
const credentialKey = (credential: string | undefined): Effect.Effect<string | undefined> =>
  credential === undefined || credential.includes(".")
    ? Effect.succeed(undefined)
    : Effect.map(
        Effect.promise(() => sha256Hex(credential.slice(0, KEY_PREFIX_LENGTH))),
        (digest) => `failures:key:${digest.slice(0, 32)}`
      )

/** A `RateLimiterStore` kept in memory that holds at most `maxKeys` counters. */
export type MemoryStore = (typeof RateLimiter.RateLimiterStore)["Service"] & {
  /** How many counters it holds now. */
  readonly size: () => number
}

/**
 * A process-local `RateLimiterStore` with bounded memory, unlike
 * `RateLimiter.layerStoreMemory`, which keeps every key it has ever seen.
 * Counters live in two generations of at most `maxKeys / 2` each: a counter
 * used again moves to the current one, and when the current one is full the
 * previous one is dropped whole, so a key idle for a generation is forgotten
 * and memory never exceeds `maxKeys` counters, however many clients come. A
 * forgotten counter starts again from zero — as one whose window has passed
 * does. Adaptive limiting is not kept.
 */
export const makeStoreMemory = (options: { readonly maxKeys?: number | undefined } = {}): MemoryStore => {
  const half = Math.max(1, Math.floor((options.maxKeys ?? defaults.maxKeys) / 2))
  // One entry shape for both algorithms; an entry is idle (the same as absent) once `idleAt` has passed.
  type Entry = { count: number; expiresAt: number; idleAt: number; tokens: number }
  let current = new Map<string, Entry>()
  let previous = new Map<string, Entry>()

  const touch = (key: string, now: number): Entry => {
    const found = current.get(key)
    if (found !== undefined) return found
    let entry = previous.get(key)
    if (entry !== undefined) {
      previous.delete(key)
      if (entry.idleAt <= now) entry = undefined
    }
    if (current.size >= half) {
      previous = current
      current = new Map()
    }
    entry ??= { count: 0, expiresAt: now, idleAt: now, tokens: Number.NaN }
    current.set(key, entry)
    return entry
  }

  return {
    size: () => current.size + previous.size,
    fixedWindow: (options) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const refillRateMillis = Duration.toMillis(options.refillRate)
          const now = clock.currentTimeMillisUnsafe()
          const counter = touch(options.key, now)
          if (counter.expiresAt <= now) {
            counter.count = 0
            counter.expiresAt = now
          }
          if (options.limit && counter.count + options.tokens > options.limit) {
            return [counter.count + options.tokens, counter.expiresAt - now] as const
          }
          counter.count += options.tokens
          counter.expiresAt += refillRateMillis * options.tokens
          counter.idleAt = counter.expiresAt
          return [counter.count, counter.expiresAt - now] as const
        })
      ),
    tokenBucket: (options) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const refillRateMillis = Duration.toMillis(options.refillRate)
          const now = clock.currentTimeMillisUnsafe()
          const bucket = touch(options.key, now)
          if (Number.isNaN(bucket.tokens) || bucket.idleAt <= now) {
            bucket.tokens = options.limit
            bucket.expiresAt = now
          }
          const tokensToAdd = Math.floor((now - bucket.expiresAt) / refillRateMillis)
          if (tokensToAdd > 0) {
            bucket.tokens = Math.min(options.limit, bucket.tokens + tokensToAdd)
            bucket.expiresAt += tokensToAdd * refillRateMillis
          }
          if (bucket.tokens >= options.limit) bucket.expiresAt = now
          const next = bucket.tokens - options.tokens
          if (options.allowOverflow || next >= 0) bucket.tokens = next
          // Full again (and so the same as absent) once every missing token has come back.
          bucket.idleAt = bucket.expiresAt + Math.max(0, options.limit - bucket.tokens) * refillRateMillis
          return [next, Math.max(0, now - bucket.expiresAt)] as const
        })
      ),
    adaptiveConsume: () => Effect.succeed({ delay: Duration.zero, epoch: 0, phase: "inactive" }),
    adaptiveFeedback: () => Effect.void
  }
}

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
    const failures = options.failures ?? defaults.failures
    const concurrent = options.concurrent ?? defaults.concurrent
    const ipv6Prefix = options.ipv6Prefix ?? defaults.ipv6Prefix
    const leaseTtl = Duration.fromInputUnsafe(options.leaseTtl ?? defaults.leaseTtl)
    const store = options.concurrency
    const storeTimeout = options.storeTimeout ?? defaults.storeTimeout

    const addressOf = (subject: Subject) =>
      subject.address === undefined ? "unknown" : addressKey(subject.address, ipv6Prefix)

    const keyOf = (
      subject: Subject
    ): { readonly key: string; readonly budget: Budget; readonly scope: "user" | "address" } =>
      subject.principal !== undefined && subject.principal.anonymous !== true
        ? { key: `user:${subject.principal.userId}`, budget: user, scope: "user" }
        : { key: `address:${addressOf(subject)}`, budget: address, scope: "address" }

    const refusal = (budget: Budget, scope: RateLimited["scope"], retryAfter: Duration.Duration) => {
      const window = Duration.fromInputUnsafe(budget.window)
      return new RateLimited({
        retryAfterSeconds: Math.max(1, seconds(retryAfter)),
        limit: budget.limit,
        scope,
        message:
          scope === "failures"
            ? `Too many failed authentications: ${budget.limit} per ${Duration.format(window)}`
            : `Rate limit exceeded: ${budget.limit} requests per ${Duration.format(window)}`
      })
    }

    /** Takes `tokens` from a budget (`0` only reads it); `undefined` when the store did not answer. */
    const consume = (key: string, budget: Budget, scope: RateLimited["scope"], tokens = 1) => {
      const window = Duration.fromInputUnsafe(budget.window)
      return limiter.consume({ key, limit: budget.limit, window, algorithm: "fixed-window", tokens }).pipe(
        Effect.timeout(storeTimeout),
        Effect.catch((error) =>
          error._tag === "RateLimiterError" && error.reason._tag === "RateLimitExceeded"
            ? Effect.fail(refusal(budget, scope, error.reason.retryAfter))
            : Effect.logWarning("Rate limiter unavailable; request allowed", error).pipe(Effect.as(undefined))
        )
      )
    }

    /** Counts one request against the subject's budget: the `RateLimit-*` headers to send. */
    const count = (subject: Subject): Effect.Effect<Record<string, string>, RateLimited> =>
      Effect.gen(function* () {
        const { key, budget, scope } = keyOf(subject)
        const window = Duration.fromInputUnsafe(budget.window)
        const consumed = budget.limit > 0 ? yield* consume(key, budget, scope) : undefined
        return consumed === undefined ? {} : headersOf({ ...consumed, window })
      })

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
            scope: "concurrent",
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

    /** The failure counters of a subject: its address, and its key prefix when it has one. */
    const failureKeys = (subject: Subject) =>
      Effect.map(credentialKey(subject.credential), (prefix) => [
        `failures:address:${addressOf(subject)}`,
        ...(prefix === undefined ? [] : [prefix])
      ])

    const beforeAuthentication = (subject: Subject): Effect.Effect<void, RateLimited> =>
      failures.limit <= 0
        ? Effect.void
        : Effect.flatMap(failureKeys(subject), (keys) =>
            Effect.forEach(
              keys,
              (key) =>
                Effect.flatMap(consume(key, failures, "failures", 0), (state) =>
                  state !== undefined && state.remaining <= 0
                    ? Effect.fail(refusal(failures, "failures", state.resetAfter))
                    : Effect.void
                ),
              // One round trip to the store, not one per counter.
              { discard: true, concurrency: "unbounded" }
            )
          )

    const rejected = (subject: Subject): Effect.Effect<void, RateLimited> =>
      failures.limit <= 0
        ? Effect.void
        : Effect.flatMap(failureKeys(subject), (keys) =>
            Effect.forEach(keys, (key) => consume(key, failures, "failures"), {
              discard: true,
              concurrency: "unbounded"
            })
          )

    const admit = (subject: Subject, admitOptions?: AdmitOptions): Effect.Effect<Admission, RateLimited> =>
      Effect.flatMap(count(subject), (headers) =>
        admitOptions?.inFlight === false
          ? Effect.succeed({ headers, release: Effect.void })
          : acquire(subject, headers)
      )

    return {
      name: options.name,
      admit,
      acquire: (subject) => acquire(subject),
      beforeAuthentication,
      rejected
    }
  })

/**
 * Rate limits kept in this process, built at once (`layerMemory` provides
 * them): counters in a bounded `makeStoreMemory`, turns in flight in a map.
 */
export const memory = (options: Options = {}): Service =>
  Effect.runSync(
    make({ ...options, name: "memory", concurrency: ConcurrencyStore.memory() }).pipe(
      Effect.provideServiceEffect(
        RateLimiter.RateLimiter,
        Effect.provideService(
          RateLimiter.make,
          RateLimiter.RateLimiterStore,
          makeStoreMemory({ maxKeys: options.maxKeys })
        )
      )
    )
  )

// The services that stand for "nothing provided": each application swaps its own in.
const defaultServices = new WeakSet<Service>()

/**
 * The rate limits in effect. Without a layer, each application gets the
 * `defaults` in memory, counted for that application alone (see
 * `forApplication`); provide `layerUnlimited` to turn them off.
 */
export const ChatRateLimit = Context.Reference<Service>("@convoke/core/ChatRateLimit", {
  defaultValue: () => {
    const service = memory()
    defaultServices.add(service)
    return service
  }
})

/**
 * The service an application uses: the one provided, or — when none was —
 * fresh default limits of its own, so two applications in one process (or
 * two tests) never share counters.
 */
export const forApplication = (service: Service): Service =>
  defaultServices.has(service) ? memory() : service

/** No limits at all: the explicit opt-out of the defaults. */
export const layerUnlimited: Layer.Layer<never> = Layer.succeed(ChatRateLimit, unlimited)

/** Rate limits kept in this process: right for a single instance. */
export const layerMemory = (options: Options = {}): Layer.Layer<never> =>
  Layer.sync(ChatRateLimit, () => memory(options))

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
  readonly failures: Budget
  readonly concurrent: number
  /** Key prefix of the counters in Redis (default `convoke:ratelimit:`); unused in memory. */
  readonly prefix: string
}

// One window for every budget, as the reference server has always had.
const window = wholeNumber("CONVOKE_RATE_LIMIT_WINDOW_SECONDS", { min: 1, max: 86_400 }).pipe(
  Config.map(Duration.seconds),
  Config.withDefault(defaults.user.window)
)

/**
 * Where `layerMemoryConfig` and `layerRedisConfig` read the options: the
 * variables of the reference server (`CONVOKE_RATE_LIMIT_REQUESTS`,
 * `CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS`, `CONVOKE_RATE_LIMIT_AUTH_FAILURES`,
 * `CONVOKE_RATE_LIMIT_WINDOW_SECONDS`, `CONVOKE_RATE_LIMIT_CONCURRENT`,
 * `CONVOKE_RATE_LIMIT_IPV6_PREFIX`, `CONVOKE_RATE_LIMIT_MAX_KEYS`,
 * `CONVOKE_REDIS_PREFIX`); `0` turns a limit off.
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
  failures: {
    limit: wholeNumber("CONVOKE_RATE_LIMIT_AUTH_FAILURES", { min: 0, max: 1_000_000 }).pipe(
      Config.withDefault(defaults.failures.limit)
    ),
    window
  },
  concurrent: wholeNumber("CONVOKE_RATE_LIMIT_CONCURRENT", { min: 0, max: 10_000 }).pipe(
    Config.withDefault(defaults.concurrent)
  ),
  ipv6Prefix: wholeNumber("CONVOKE_RATE_LIMIT_IPV6_PREFIX", { min: 16, max: 128 }).pipe(
    Config.withDefault(defaults.ipv6Prefix)
  ),
  maxKeys: wholeNumber("CONVOKE_RATE_LIMIT_MAX_KEYS", { min: 100, max: 100_000_000 }).pipe(
    Config.withDefault(defaults.maxKeys)
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
