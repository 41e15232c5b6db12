/**
 * The reference server's settings as `effect/Config`s, read from flags and
 * environment variables (flags win, see `CommandLine.ts`) and validated
 * before anything starts. The chat, CORS and rate-limit settings are the
 * core's own configs (`ChatConfig.config`, `HttpSecurity.config`,
 * `ChatRateLimit.config`), so a server built from the core's `layerConfig`s
 * reads the same variables the same way. Every problem is reported at once,
 * naming the variable, its flag and the value expected.
 */
import { isIP } from "node:net"
import { resolve } from "node:path"
import * as AnthropicModels from "@convoke/anthropic/models"
import { AdminAccess, ChatConfig, ChatRateLimit, HttpSecurity, Identity, TurnLog } from "@convoke/core"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as CommandLine from "./CommandLine.ts"
import * as ConfigProblems from "./ConfigProblems.ts"
import { WEB_DEMO_DIR } from "./StaticFiles.ts"

/** Validated settings. */
export interface Settings {
  readonly host: string
  readonly port: number
  /** PostgreSQL URL; when absent the embedded PGlite store is used. */
  readonly databaseUrl: string | undefined
  /** Where the embedded store keeps its files, and the outbox its journal (`outbox/`) without Redis. */
  readonly dataDir: string
  /** API keys and the user id each maps to; empty means no key auth. */
  readonly apiKeys: ReadonlyArray<{ readonly key: string; readonly userId: string }>
  /** Allow anonymous mode on a non-loopback bind (never the default). */
  readonly insecureAnonymous: boolean
  /** The chat endpoint's settings: public model, body and message limits, heartbeat, creation budget. */
  readonly chat: ChatConfig.Settings
  /** CORS and security headers. */
  readonly security: HttpSecurity.Settings
  /** Rate limits, and their key prefix in Redis. */
  readonly rateLimit: ChatRateLimit.Settings
  readonly echoDelayMs: number
  /** How long open streams get to finish after a shutdown signal. */
  readonly shutdownGraceMs: number
  /** Most writes kept while the database is unavailable. */
  readonly outboxCapacity: number
  /** Most writes one user may have in the outbox; `undefined`: a tenth of the capacity; 0: no share. */
  readonly outboxUserCapacity: number | undefined
  /** Key prefix of the outbox's entries in Redis (with `redisUrl`); instances sharing it drain each other's writes. */
  readonly outboxPrefix: string
  /** Minutes between cleanups of abandoned conversations; 0 turns the job off. */
  readonly cleanupIntervalMinutes: number
  /** Hours after which an unanswered conversation counts as abandoned. */
  readonly abandonedAfterHours: number
  /** Directory of static files served at `/` (the web demo); `undefined` serves none. */
  readonly webDir: string | undefined
  /** Claude settings; present when `ANTHROPIC_API_KEY` is set, else the echo model is used. */
  readonly anthropic: AnthropicSettings | undefined
  /**
   * `/metrics` on the chat port (`on`), nowhere (`off`), or alone on another
   * address, the admin port, which also serves the details of `/health`.
   */
  readonly metrics: "on" | "off" | { readonly host: string; readonly port: number }
  /**
   * The admin token: with it, `/health` on the chat port answers its details
   * and `/metrics` there answers only requests that send it.
   */
  readonly adminToken: Redacted.Redacted<string> | undefined
  /** Request and turn logs: human-readable, one JSON object per line, or none. */
  readonly logFormat: "pretty" | "json" | "off"
  /** OTLP/HTTP endpoint traces are exported to (`<url>/v1/traces`); none by default. */
  readonly otlpUrl: string | undefined
  /** JWT verification; `undefined` when neither a secret nor a JWKS URL is set. */
  readonly jwt: JwtSettings | undefined
  /**
   * Redis for shared rate limits, the turn log and the outbox; `undefined`
   * keeps them in the process (the outbox in a journal).
   */
  readonly redisUrl: string | undefined
  /** Key prefix of the turn log in Redis: deployments sharing one Redis need their own. */
  readonly turnLogPrefix: string
  /** Memory, in MiB, the turns the turn log keeps in this process may take (estimated); ended turns go first. */
  readonly turnLogMaxMb: number
  /** Largest accepted request head (request line and headers); larger is a 431. */
  readonly maxHeaderBytes: number
  /** Longest time a request head (request line and headers) may take to arrive; past it a 408. */
  readonly headersTimeoutMs: number
  /** Most open connections; one more is answered with a 503 and closed. */
  readonly maxConnections: number
  /** How long an idle keep-alive connection is kept for its next request. */
  readonly keepAliveTimeoutMs: number
  /** Most requests one keep-alive connection carries before it is closed (0: no limit). */
  readonly maxRequestsPerSocket: number
}

/** Settings of the Claude model. */
export interface AnthropicSettings {
  readonly apiKey: Redacted.Redacted<string>
  readonly baseUrl: string | undefined
  /** Provider model for requests that name none; `undefined` keeps the package default. */
  readonly model: string | undefined
  /** Extra request aliases → provider models. */
  readonly models: Readonly<Record<string, string>>
  readonly maxTokens: number
  readonly systemPrompt: string | undefined
  readonly idleTimeoutMs: number
  readonly maxRetries: number
  readonly retryDelayMs: number
  readonly historyMaxMessages: number
  readonly historyMaxCharacters: number
}

/** Settings of JWT verification. */
export interface JwtSettings {
  readonly secret: string | undefined
  readonly jwksUrl: string | undefined
  readonly issuer: string | undefined
  readonly audience: string | undefined
  readonly userClaim: string
  /** `namespaced` (`jwt:<iss>:<claim>`, the default) or `claim` (shared with API key users). */
  readonly userIds: "namespaced" | "claim"
  /** Least time between JWKS refetches caused by unknown `kid`s. */
  readonly jwksCooldownSeconds: number
}

/** Settings could not be read; `problems` says every reason. */
export class SettingsError extends Error {
  readonly problems: ReadonlyArray<string>
  constructor(problems: ReadonlyArray<string>) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`)
    this.name = "SettingsError"
    this.problems = problems
  }
}

/** Whether binding this address keeps the server reachable from this machine only. */
export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."))

const { wholeNumber } = ChatConfig

/**
 * A text variable; `check` answers `true` or what is wrong (one message per
 * problem), phrased to follow the variable's name.
 */
const text = (name: string, check: (raw: string) => true | string | Array<string> = () => true) =>
  Config.schema(Schema.String.check(Schema.makeFilter(check)), name)

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.withDefault(config, undefined)

const notBlank = (raw: string) => raw.trim() !== "" || "must not be empty"

const httpUrl = (raw: string) => /^https?:\/\/[^\s]+$/.test(raw) || "must be an http:// or https:// URL"

/** Reads `key:user-id` pairs; the user id follows the last colon, so a key may hold colons. */
const apiKeyEntries = (raw: string) => {
  const keys: Array<{ key: string; userId: string }> = []
  const problems: Array<string> = []
  if (raw.trim() === "") return { keys, problems }
  for (const entry of raw.split(",")) {
    const separator = entry.lastIndexOf(":")
    const key = entry.slice(0, separator).trim()
    const userId = entry.slice(separator + 1).trim()
    // Entries are described by length only: they hold secrets.
    if (separator <= 0 || key === "" || userId === "") {
      problems.push(`entries must look like key:user-id (got an entry of ${entry.length} characters)`)
    } else if (Identity.keyProblem(key) !== undefined) {
      problems.push(
        `must hold keys as strong as generated ones: the key for user "${userId}" ${Identity.keyProblem(key)}`
      )
    } else {
      keys.push({ key, userId })
    }
  }
  return { keys, problems }
}

const BOOLEANS: Readonly<Record<string, boolean>> = {
  true: true,
  yes: true,
  on: true,
  "1": true,
  false: false,
  no: false,
  off: false,
  "0": false
}

const flag = (name: string) =>
  text(
    name,
    (raw) =>
      Object.hasOwn(BOOLEANS, raw.trim().toLowerCase()) ||
      `must be true or false (yes/no, on/off, 1/0), got "${raw}"`
  ).pipe(
    Config.map((raw) => BOOLEANS[raw.trim().toLowerCase()]!),
    Config.withDefault(false)
  )

/** `on`, `off`, or `[host:]port` (a bracketed IPv6 host allowed); `undefined` when it is none of them. */
const metricsOf = (raw: string, defaultHost: string): Settings["metrics"] | undefined => {
  const value = raw.trim().toLowerCase()
  if (["on", "true", "yes"].includes(value)) return "on"
  if (["off", "false", "no"].includes(value)) return "off"
  const match = /^(?:(.+):)?(\d+)$/.exec(raw.trim())
  if (match === null || Number(match[2]) > 65535) return undefined
  return { host: (match[1] ?? defaultHost).replace(/^\[(.*)\]$/, "$1"), port: Number(match[2]) }
}

const LOG_FORMATS = ["pretty", "json", "off"] as const

const host = text("HOST").pipe(Config.withDefault("127.0.0.1"))

const jwtSecretName = "CONVOKE_JWT_SECRET"
const jwksUrlName = "CONVOKE_JWKS_URL"

// Read only when a secret or a JWKS URL is set, as the settings mean nothing without one.
const jwt: Config.Config<JwtSettings | undefined> = Config.all([
  optional(text(jwtSecretName)),
  optional(text(jwksUrlName))
]).pipe(
  Config.flatMap(([secret, jwksUrl]) =>
    secret === undefined && jwksUrl === undefined
      ? Config.succeed(undefined)
      : ConfigProblems.unwrapAll<JwtSettings>({
          secret: optional(
            text(
              jwtSecretName,
              (raw) => new TextEncoder().encode(raw).byteLength >= 32 || "is too short: use at least 32 bytes"
            )
          ),
          jwksUrl: optional(
            text(jwksUrlName, (raw) => /^https?:\/\//.test(raw) || "must be an http:// or https:// URL")
          ),
          // A JWKS signs for every application of its identity provider: with one, the
          // tokens meant for this server are told apart by their issuer and audience.
          issuer:
            jwksUrl === undefined
              ? optional(text("CONVOKE_JWT_ISSUER"))
              : text("CONVOKE_JWT_ISSUER", notBlank),
          audience:
            jwksUrl === undefined
              ? optional(text("CONVOKE_JWT_AUDIENCE"))
              : text("CONVOKE_JWT_AUDIENCE", notBlank),
          userClaim: text("CONVOKE_JWT_USER_CLAIM", notBlank).pipe(Config.withDefault("sub")),
          userIds: text(
            "CONVOKE_JWT_USER_IDS",
            (raw) =>
              ["namespaced", "claim"].includes(raw.trim()) || `must be namespaced or claim, got "${raw}"`
          ).pipe(
            Config.map((raw) => raw.trim() as "namespaced" | "claim"),
            Config.withDefault("namespaced" as const)
          ),
          jwksCooldownSeconds: wholeNumber("CONVOKE_JWKS_COOLDOWN_SECONDS", { min: 0, max: 86_400 }).pipe(
            Config.withDefault(30)
          )
        })
  )
)

// Read only when a key is set: without one the echo model answers.
const anthropic: Config.Config<AnthropicSettings | undefined> = optional(text("ANTHROPIC_API_KEY")).pipe(
  Config.map((key) => key?.trim() || undefined),
  Config.flatMap((key) =>
    key === undefined
      ? Config.succeed(undefined)
      : ConfigProblems.unwrapAll<AnthropicSettings>({
          apiKey: Config.succeed(Redacted.make(key)),
          baseUrl: optional(text("ANTHROPIC_BASE_URL", httpUrl)),
          model: optional(text("ANTHROPIC_MODEL", notBlank)),
          models: text("CONVOKE_ANTHROPIC_MODELS", (raw) => {
            try {
              AnthropicModels.parseAliases(raw)
              return true
            } catch (error) {
              return (error as Error).message
            }
          }).pipe(Config.map(AnthropicModels.parseAliases), Config.withDefault({})),
          maxTokens: wholeNumber("ANTHROPIC_MAX_TOKENS", { min: 1, max: 1_000_000 }).pipe(
            Config.withDefault(4096)
          ),
          systemPrompt: optional(text("ANTHROPIC_SYSTEM_PROMPT")),
          idleTimeoutMs: wholeNumber("CONVOKE_MODEL_IDLE_TIMEOUT_MS", { min: 10, max: 3_600_000 }).pipe(
            Config.withDefault(60_000)
          ),
          maxRetries: wholeNumber("CONVOKE_MODEL_MAX_RETRIES", { min: 0, max: 10 }).pipe(
            Config.withDefault(2)
          ),
          retryDelayMs: wholeNumber("CONVOKE_MODEL_RETRY_DELAY_MS", { min: 0, max: 60_000 }).pipe(
            Config.withDefault(500)
          ),
          historyMaxMessages: wholeNumber("CONVOKE_HISTORY_MAX_MESSAGES", { min: 1, max: 100_000 }).pipe(
            Config.withDefault(100)
          ),
          historyMaxCharacters: wholeNumber("CONVOKE_HISTORY_MAX_CHARACTERS", {
            min: 1000,
            max: 100_000_000
          }).pipe(Config.withDefault(400_000))
        })
  )
)

/**
 * Every setting of the server, read from the current `ConfigProvider`; the
 * failure lists every problem (see `ConfigProblems.list`). Problems come in
 * the order of the fields below.
 */
export const config: Config.Config<Settings> = ConfigProblems.unwrapAll<Settings>({
  host,
  port: wholeNumber("PORT", { min: 0, max: 65535 }).pipe(Config.withDefault(3000)),
  databaseUrl: optional(
    text(
      "DATABASE_URL",
      (raw) => /^postgres(ql)?:\/\//.test(raw) || "must be a postgres:// or postgresql:// URL"
    )
  ),
  dataDir: text("CONVOKE_DATA_DIR").pipe(Config.withDefault("./.convoke/data")),
  apiKeys: text("CONVOKE_API_KEYS", (raw) => apiKeyEntries(raw).problems).pipe(
    Config.map((raw) => apiKeyEntries(raw).keys),
    Config.withDefault([])
  ),
  // Whether stored keys exist is known only once the database is open: the
  // refusal of anonymous access on other addresses is made by `Server.start`.
  insecureAnonymous: flag("CONVOKE_INSECURE_ALLOW_ANONYMOUS"),
  jwt,
  security: HttpSecurity.config,
  adminToken: AdminAccess.config,
  redisUrl: optional(
    text("REDIS_URL", (raw) => /^rediss?:\/\//.test(raw) || "must be a redis:// or rediss:// URL")
  ),
  turnLogPrefix: Config.String("CONVOKE_TURN_LOG_PREFIX").pipe(Config.withDefault("convoke:turns:")),
  turnLogMaxMb: wholeNumber("CONVOKE_TURN_LOG_MAX_MB", { min: 1, max: 1_048_576 }).pipe(
    Config.withDefault(TurnLog.defaults.maxBytes / 1024 / 1024)
  ),
  rateLimit: ChatRateLimit.config,
  chat: ChatConfig.config,
  maxHeaderBytes: wholeNumber("CONVOKE_MAX_HEADER_BYTES", { min: 1024, max: 1024 * 1024 }).pipe(
    Config.withDefault(16_384)
  ),
  headersTimeoutMs: wholeNumber("CONVOKE_HEADERS_TIMEOUT_MS", { min: 1, max: 3_600_000 }).pipe(
    Config.withDefault(20_000)
  ),
  maxConnections: wholeNumber("CONVOKE_MAX_CONNECTIONS", { min: 1, max: 1_000_000 }).pipe(
    Config.withDefault(10_000)
  ),
  keepAliveTimeoutMs: wholeNumber("CONVOKE_KEEP_ALIVE_TIMEOUT_MS", { min: 1, max: 3_600_000 }).pipe(
    Config.withDefault(65_000)
  ),
  maxRequestsPerSocket: wholeNumber("CONVOKE_MAX_REQUESTS_PER_SOCKET", { min: 0, max: 1_000_000 }).pipe(
    Config.withDefault(1000)
  ),
  echoDelayMs: wholeNumber("CONVOKE_ECHO_DELAY_MS", { min: 0, max: 60_000 }).pipe(Config.withDefault(20)),
  shutdownGraceMs: wholeNumber("CONVOKE_SHUTDOWN_GRACE_MS", { min: 0, max: 600_000 }).pipe(
    Config.withDefault(5000)
  ),
  outboxCapacity: wholeNumber("CONVOKE_OUTBOX_CAPACITY", { min: 0, max: 10_000_000 }).pipe(
    Config.withDefault(10_000)
  ),
  outboxUserCapacity: optional(wholeNumber("CONVOKE_OUTBOX_USER_CAPACITY", { min: 0, max: 10_000_000 })),
  outboxPrefix: text("CONVOKE_OUTBOX_PREFIX", notBlank).pipe(Config.withDefault("convoke:outbox:")),
  cleanupIntervalMinutes: wholeNumber("CONVOKE_CLEANUP_INTERVAL_MINUTES", { min: 0, max: 10_080 }).pipe(
    Config.withDefault(10)
  ),
  abandonedAfterHours: wholeNumber("CONVOKE_ABANDONED_AFTER_HOURS", { min: 1, max: 87_600 }).pipe(
    Config.withDefault(24)
  ),
  anthropic,
  logFormat: text(
    "CONVOKE_LOG_FORMAT",
    (raw) =>
      (LOG_FORMATS as ReadonlyArray<string>).includes(raw.trim().toLowerCase()) ||
      `must be pretty, json or off, got "${raw.trim().toLowerCase()}"`
  ).pipe(
    Config.map((raw) => raw.trim().toLowerCase() as Settings["logFormat"]),
    Config.withDefault("pretty")
  ),
  otlpUrl: optional(
    text(
      "OTEL_EXPORTER_OTLP_ENDPOINT",
      (raw) => /^https?:\/\//.test(raw) || "must be an http:// or https:// URL"
    ).pipe(Config.map((raw) => raw.replace(/\/+$/, "")))
  ),
  metrics: Config.all([
    host,
    text(
      "CONVOKE_METRICS",
      (raw) =>
        metricsOf(raw, "") !== undefined ||
        `must be on, off, or [host:]port (0 picks a free port), got "${raw}"`
    ).pipe(Config.withDefault("on"))
  ]).pipe(Config.map(([defaultHost, raw]) => metricsOf(raw, defaultHost)!)),
  webDir: optional(text("CONVOKE_WEB_DIR")).pipe(
    Config.map((raw) => (raw === "off" ? undefined : resolve(raw ?? WEB_DEMO_DIR)))
  )
})

/**
 * Refuses anonymous access on an address other than loopback, unless the
 * insecure flag is given. Called once stored keys have been counted.
 */
export const checkAnonymous = (settings: Settings): void => {
  if (!isLoopback(settings.host) && !settings.insecureAnonymous) {
    throw new SettingsError([
      `Refusing anonymous access on ${settings.host}, which is not a loopback address: set CONVOKE_API_KEYS or CONVOKE_JWT_SECRET / CONVOKE_JWKS_URL, create a key with "convoke keys create", bind 127.0.0.1, or pass --insecure-allow-anonymous`
    ])
  }
}

/**
 * Reads and validates settings from flags and environment variables (flags
 * win); throws `SettingsError` listing every problem, or a `TypeError` for
 * an unknown flag.
 */
export const load = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): Settings => {
  const read = Effect.runSync(Effect.result(config.parse(CommandLine.provider(argv, env))))
  if (Result.isSuccess(read)) return read.success
  throw new SettingsError(ConfigProblems.list(read.failure).map(CommandLine.describeProblem))
}
