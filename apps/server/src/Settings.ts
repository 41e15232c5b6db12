/**
 * The reference server's settings, read from flags and environment variables
 * (flags win) and validated before anything starts. Every problem is reported
 * at once, in words that say how to fix it.
 */
import { isIP } from "node:net"
import { relative, resolve } from "node:path"
import { parseArgs } from "node:util"
import { AnthropicModels } from "@convoke/anthropic"
import { Redacted } from "effect"
import { WEB_DEMO_DIR } from "./StaticFiles.ts"

/** Validated settings. */
export interface Settings {
  readonly host: string
  readonly port: number
  /** PostgreSQL URL; when absent the embedded PGlite store is used. */
  readonly databaseUrl: string | undefined
  /** Where the embedded store keeps its files. */
  readonly dataDir: string
  /** API keys and the user id each maps to; empty means no key auth. */
  readonly apiKeys: ReadonlyArray<{ readonly key: string; readonly userId: string }>
  /** Allow anonymous mode on a non-loopback bind (never the default). */
  readonly insecureAnonymous: boolean
  readonly publicModel: string
  readonly maxBodyBytes: number
  readonly heartbeatSeconds: number
  readonly echoDelayMs: number
  /** How long open streams get to finish after a shutdown signal. */
  readonly shutdownGraceMs: number
  /** Time budget for creating a stream's conversation before a temporary id is used. */
  readonly creationBudgetMs: number
  /** Most writes kept while the database is unavailable. */
  readonly outboxCapacity: number
  /** Minutes between cleanups of abandoned conversations; 0 turns the job off. */
  readonly cleanupIntervalMinutes: number
  /** Hours after which an unanswered conversation counts as abandoned. */
  readonly abandonedAfterHours: number
  /** Directory of static files served at `/` (the web demo); `undefined` serves none. */
  readonly webDir: string | undefined
  /** Claude settings; present when `ANTHROPIC_API_KEY` is set, else the echo model is used. */
  readonly anthropic: AnthropicSettings | undefined
  /** `/metrics` on the chat port (`on`), nowhere (`off`), or alone on another address. */
  readonly metrics: "on" | "off" | { readonly host: string; readonly port: number }
  /** Request and turn logs: human-readable, one JSON object per line, or none. */
  readonly logFormat: "pretty" | "json" | "off"
  /** OTLP/HTTP endpoint traces are exported to (`<url>/v1/traces`); none by default. */
  readonly otlpUrl: string | undefined
  /** JWT verification; `undefined` when neither a secret nor a JWKS URL is set. */
  readonly jwt:
    | {
        readonly secret: string | undefined
        readonly jwksUrl: string | undefined
        readonly issuer: string | undefined
        readonly audience: string | undefined
        readonly userClaim: string
        /** Least time between JWKS refetches caused by unknown `kid`s. */
        readonly jwksCooldownSeconds: number
      }
    | undefined
  /** Origins allowed to call from browsers; `undefined` sends no CORS headers. */
  readonly corsOrigins: ReadonlyArray<string> | "*" | undefined
  /** Redis for shared rate limits; `undefined` keeps them in memory. */
  readonly redisUrl: string | undefined
  /** Key prefix of the rate-limit counters in Redis. */
  readonly redisPrefix: string
  readonly rateLimit: {
    /** Requests per window per user; 0 turns the limit off. */
    readonly userRequests: number
    /** Requests per window per client address without an identity; 0 turns it off. */
    readonly addressRequests: number
    readonly windowSeconds: number
    /** Chat requests in flight per user; 0 turns the limit off. */
    readonly concurrent: number
  }
  readonly maxMessageCharacters: number
  readonly maxJsonDepth: number
  /** Largest accepted request head (request line and headers); larger is a 431. */
  readonly maxHeaderBytes: number
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

/** One setting: its flag, its environment variable, its default and meaning. */
interface Option {
  readonly flag: string
  readonly env: string
  readonly type: "string" | "boolean"
  readonly description: string
  readonly fallback?: string
  /** Read from the environment only (secrets stay out of the process list). */
  readonly envOnly?: boolean
}

/** Every setting, in the order the help text lists them. */
export const OPTIONS: ReadonlyArray<Option> = [
  { flag: "host", env: "HOST", type: "string", fallback: "127.0.0.1", description: "Address to bind" },
  {
    flag: "port",
    env: "PORT",
    type: "string",
    fallback: "3000",
    description: "Port to listen on (0 picks a free one)"
  },
  {
    flag: "database-url",
    env: "DATABASE_URL",
    type: "string",
    description: "PostgreSQL URL; without it an embedded PGlite database is used"
  },
  {
    flag: "data-dir",
    env: "CONVOKE_DATA_DIR",
    type: "string",
    fallback: "./.convoke/data",
    description: "Directory of the embedded database"
  },
  {
    flag: "api-keys",
    env: "CONVOKE_API_KEYS",
    type: "string",
    description: "Comma-separated key:user-id pairs; requests must send one (Bearer or X-API-Key)"
  },
  {
    flag: "insecure-allow-anonymous",
    env: "CONVOKE_INSECURE_ALLOW_ANONYMOUS",
    type: "boolean",
    description: "Allow anonymous access on a non-loopback address (unsafe)"
  },
  {
    flag: "jwt-secret",
    env: "CONVOKE_JWT_SECRET",
    type: "string",
    description: "Accept HS256 JWTs signed with this secret (at least 32 bytes)"
  },
  {
    flag: "jwks-url",
    env: "CONVOKE_JWKS_URL",
    type: "string",
    description: "Accept RS/PS/ES/EdDSA JWTs signed by a key of this JWKS URL"
  },
  { flag: "jwt-issuer", env: "CONVOKE_JWT_ISSUER", type: "string", description: "Required JWT iss claim" },
  {
    flag: "jwt-audience",
    env: "CONVOKE_JWT_AUDIENCE",
    type: "string",
    description: "Required JWT aud claim"
  },
  {
    flag: "jwt-user-claim",
    env: "CONVOKE_JWT_USER_CLAIM",
    type: "string",
    fallback: "sub",
    description: "JWT claim holding the user id"
  },
  {
    flag: "jwks-cooldown-seconds",
    env: "CONVOKE_JWKS_COOLDOWN_SECONDS",
    type: "string",
    fallback: "30",
    description: "Least time between JWKS refetches caused by tokens with unknown key ids"
  },
  {
    flag: "cors-origins",
    env: "CONVOKE_CORS_ORIGINS",
    type: "string",
    description: "Comma-separated origins allowed to call from browsers, or * for any"
  },
  {
    flag: "redis-url",
    env: "REDIS_URL",
    type: "string",
    description: "Redis URL; rate limits are then shared by every instance using it"
  },
  {
    flag: "redis-prefix",
    env: "CONVOKE_REDIS_PREFIX",
    type: "string",
    fallback: "convoke:ratelimit:",
    description: "Key prefix of the rate-limit counters in Redis"
  },
  {
    flag: "rate-limit-requests",
    env: "CONVOKE_RATE_LIMIT_REQUESTS",
    type: "string",
    fallback: "120",
    description: "Chat requests per window per user (0: no limit)"
  },
  {
    flag: "rate-limit-address-requests",
    env: "CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS",
    type: "string",
    fallback: "60",
    description: "Chat requests per window per client address without an identity (0: no limit)"
  },
  {
    flag: "rate-limit-window-seconds",
    env: "CONVOKE_RATE_LIMIT_WINDOW_SECONDS",
    type: "string",
    fallback: "60",
    description: "Rate-limit window"
  },
  {
    flag: "rate-limit-concurrent",
    env: "CONVOKE_RATE_LIMIT_CONCURRENT",
    type: "string",
    fallback: "8",
    description: "Chat requests in flight per user (0: no limit)"
  },
  {
    flag: "max-message-characters",
    env: "CONVOKE_MAX_MESSAGE_CHARACTERS",
    type: "string",
    fallback: "32768",
    description: "Longest accepted message, in characters"
  },
  {
    flag: "max-json-depth",
    env: "CONVOKE_MAX_JSON_DEPTH",
    type: "string",
    fallback: "16",
    description: "Deepest accepted JSON nesting of a request body"
  },
  {
    flag: "max-header-bytes",
    env: "CONVOKE_MAX_HEADER_BYTES",
    type: "string",
    fallback: "16384",
    description: "Largest accepted request line and headers (431 past it)"
  },
  {
    flag: "public-model",
    env: "CONVOKE_PUBLIC_MODEL",
    type: "string",
    fallback: "unified-chat",
    description: "Model name reported in the metadata event"
  },
  {
    flag: "max-body-bytes",
    env: "CONVOKE_MAX_BODY_BYTES",
    type: "string",
    fallback: "32768",
    description: "Largest accepted request body"
  },
  {
    flag: "heartbeat-seconds",
    env: "CONVOKE_HEARTBEAT_SECONDS",
    type: "string",
    fallback: "15",
    description: "Interval of ': ping' comments while the model is silent"
  },
  {
    flag: "echo-delay-ms",
    env: "CONVOKE_ECHO_DELAY_MS",
    type: "string",
    fallback: "20",
    description: "Pause between words of the echo model"
  },
  {
    flag: "shutdown-grace-ms",
    env: "CONVOKE_SHUTDOWN_GRACE_MS",
    type: "string",
    fallback: "5000",
    description: "Time open streams get to close after SIGTERM/SIGINT"
  },
  {
    flag: "creation-budget-ms",
    env: "CONVOKE_CREATION_BUDGET_MS",
    type: "string",
    fallback: "50",
    description: "Wait for the database before a stream starts on a temporary id"
  },
  {
    flag: "outbox-capacity",
    env: "CONVOKE_OUTBOX_CAPACITY",
    type: "string",
    fallback: "10000",
    description: "Writes kept in memory while the database is unavailable"
  },
  {
    flag: "cleanup-interval-minutes",
    env: "CONVOKE_CLEANUP_INTERVAL_MINUTES",
    type: "string",
    fallback: "10",
    description: "Minutes between cleanups of abandoned conversations (0: off)"
  },
  {
    flag: "abandoned-after-hours",
    env: "CONVOKE_ABANDONED_AFTER_HOURS",
    type: "string",
    fallback: "24",
    description: "Age at which a never-answered conversation is deleted"
  },
  {
    flag: "anthropic-api-key",
    env: "ANTHROPIC_API_KEY",
    type: "string",
    envOnly: true,
    description: "Anthropic API key; when set, replies come from Claude instead of the echo model"
  },
  {
    flag: "anthropic-base-url",
    env: "ANTHROPIC_BASE_URL",
    type: "string",
    description: "Anthropic API base URL, for gateways (default https://api.anthropic.com)"
  },
  {
    flag: "anthropic-model",
    env: "ANTHROPIC_MODEL",
    type: "string",
    description: `Claude model for requests that name none (default ${AnthropicModels.defaultModel})`
  },
  {
    flag: "anthropic-models",
    env: "CONVOKE_ANTHROPIC_MODELS",
    type: "string",
    description: "Extra accepted request models, as alias=claude-model pairs, comma-separated"
  },
  {
    flag: "anthropic-max-tokens",
    env: "ANTHROPIC_MAX_TOKENS",
    type: "string",
    fallback: "4096",
    description: "max_tokens of each Claude reply"
  },
  {
    flag: "system-prompt",
    env: "ANTHROPIC_SYSTEM_PROMPT",
    type: "string",
    description: "System prompt sent to Claude with every request"
  },
  {
    flag: "model-idle-timeout-ms",
    env: "CONVOKE_MODEL_IDLE_TIMEOUT_MS",
    type: "string",
    fallback: "60000",
    description: "Silence from Claude (not even a ping) that ends a reply with a timeout_error"
  },
  {
    flag: "model-max-retries",
    env: "CONVOKE_MODEL_MAX_RETRIES",
    type: "string",
    fallback: "2",
    description: "Retries of an overloaded, rate-limited or failed Claude request before its first word"
  },
  {
    flag: "model-retry-delay-ms",
    env: "CONVOKE_MODEL_RETRY_DELAY_MS",
    type: "string",
    fallback: "500",
    description: "First retry delay, doubled each time (a longer retry-after is honoured)"
  },
  {
    flag: "history-max-messages",
    env: "CONVOKE_HISTORY_MAX_MESSAGES",
    type: "string",
    fallback: "100",
    description: "Most turns of history sent to Claude (oldest dropped first)"
  },
  {
    flag: "history-max-characters",
    env: "CONVOKE_HISTORY_MAX_CHARACTERS",
    type: "string",
    fallback: "400000",
    description: "Most characters of history sent to Claude (oldest dropped first)"
  },
  {
    flag: "metrics",
    env: "CONVOKE_METRICS",
    type: "string",
    fallback: "on",
    description: "Prometheus /metrics: on (chat port), off, or [host:]port to serve it alone there"
  },
  {
    flag: "log-format",
    env: "CONVOKE_LOG_FORMAT",
    type: "string",
    fallback: "pretty",
    description: "Request and turn logs: pretty, json (one object per line) or off"
  },
  {
    flag: "otlp-url",
    env: "OTEL_EXPORTER_OTLP_ENDPOINT",
    type: "string",
    description: "Export traces over OTLP/HTTP to this endpoint (<url>/v1/traces); off when unset"
  },
  {
    flag: "web-dir",
    env: "CONVOKE_WEB_DIR",
    type: "string",
    description: `Static files served at / ("off" serves none; default: the demo page, ${relative(process.cwd(), WEB_DEMO_DIR) || "."})`
  }
]

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

/** The help text of the CLI. */
export const help = (): string =>
  [
    "Usage: convoke [options]",
    "",
    "Starts the Convoke reference server. Every option can also be set by environment variable.",
    "",
    ...OPTIONS.map(
      (option) =>
        `  ${option.envOnly === true ? "(environment only)".padEnd(28) : `--${option.flag.padEnd(26)}`} ${option.env.padEnd(34)} ${option.description}${option.fallback === undefined ? "" : ` (default ${option.fallback})`}`
    ),
    "  --help                     Show this help"
  ].join("\n")

const integer = (
  problems: Array<string>,
  name: string,
  raw: string,
  range: { readonly min: number; readonly max: number }
): number => {
  const value = Number(raw)
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < range.min || value > range.max) {
    problems.push(`${name} must be a whole number from ${range.min} to ${range.max}, got "${raw}"`)
    return range.min
  }
  return value
}

const parseApiKeys = (problems: Array<string>, raw: string | undefined) => {
  if (raw === undefined || raw.trim() === "") return []
  const keys: Array<{ key: string; userId: string }> = []
  for (const entry of raw.split(",")) {
    const separator = entry.lastIndexOf(":")
    const key = entry.slice(0, separator).trim()
    const userId = entry.slice(separator + 1).trim()
    if (separator <= 0 || key === "" || userId === "") {
      problems.push(
        `CONVOKE_API_KEYS entries must look like key:user-id (got an entry of ${entry.length} characters)`
      )
    } else if (key.length < 16) {
      problems.push(`API key for user "${userId}" is too short: use at least 16 characters`)
    } else {
      keys.push({ key, userId })
    }
  }
  return keys
}

const parseMetrics = (problems: Array<string>, raw: string, defaultHost: string): Settings["metrics"] => {
  const value = raw.trim().toLowerCase()
  if (["on", "true", "yes"].includes(value)) return "on"
  if (["off", "false", "no"].includes(value)) return "off"
  const match = /^(?:(.+):)?(\d+)$/.exec(raw.trim())
  const port = match === null ? Number.NaN : Number(match[2])
  if (match === null || !Number.isSafeInteger(port) || port > 65535) {
    problems.push(`CONVOKE_METRICS must be on, off, or [host:]port (0 picks a free port), got "${raw}"`)
    return "off"
  }
  const host = (match[1] ?? defaultHost).replace(/^\[(.*)\]$/, "$1")
  return { host, port }
}

const parseJwt = (problems: Array<string>, read: (flag: string) => string | undefined): Settings["jwt"] => {
  const secret = read("jwt-secret")
  const jwksUrl = read("jwks-url")
  if (secret === undefined && jwksUrl === undefined) return undefined
  if (secret !== undefined && new TextEncoder().encode(secret).byteLength < 32) {
    problems.push("CONVOKE_JWT_SECRET is too short: use at least 32 bytes")
  }
  if (jwksUrl !== undefined && !/^https?:\/\//.test(jwksUrl)) {
    problems.push("CONVOKE_JWKS_URL must be an http:// or https:// URL")
  }
  const userClaim = read("jwt-user-claim")!
  if (userClaim.trim() === "") problems.push("CONVOKE_JWT_USER_CLAIM must not be empty")
  const jwksCooldownSeconds = integer(
    problems,
    "CONVOKE_JWKS_COOLDOWN_SECONDS",
    read("jwks-cooldown-seconds")!,
    {
      min: 0,
      max: 86_400
    }
  )
  return {
    secret,
    jwksUrl,
    issuer: read("jwt-issuer"),
    audience: read("jwt-audience"),
    userClaim,
    jwksCooldownSeconds
  }
}

const parseOrigins = (problems: Array<string>, raw: string | undefined): Settings["corsOrigins"] => {
  if (raw === undefined || raw.trim() === "") return undefined
  if (raw.trim() === "*") return "*"
  const origins = raw
    .split(",")
    .map((origin) => origin.trim())
    .filter((origin) => origin !== "")
  for (const origin of origins) {
    let valid = false
    try {
      valid = new URL(origin).origin === origin
    } catch {}
    if (!valid)
      problems.push(`CONVOKE_CORS_ORIGINS: "${origin}" is not an origin like https://app.example.com`)
  }
  return origins
}

const parseRedisUrl = (problems: Array<string>, raw: string | undefined): string | undefined => {
  if (raw === undefined) return undefined
  if (!/^rediss?:\/\//.test(raw)) problems.push("REDIS_URL must be a redis:// or rediss:// URL")
  return raw
}

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

/** Reads and validates settings; throws `SettingsError` listing every problem. */
export const load = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): Settings => {
  const { values } = parseArgs({
    args: [...argv],
    options: Object.fromEntries(
      OPTIONS.filter((option) => option.envOnly !== true).map((option) => [
        option.flag,
        { type: option.type }
      ])
    ),
    strict: true,
    allowPositionals: false
  })
  const read = (flag: string): string | undefined => {
    const option = OPTIONS.find((candidate) => candidate.flag === flag)!
    const fromFlag = values[flag]
    if (typeof fromFlag === "string") return fromFlag
    if (fromFlag === true) return "true"
    const fromEnv = env[option.env]
    return fromEnv === undefined || fromEnv === "" ? option.fallback : fromEnv
  }
  const problems: Array<string> = []
  const host = read("host")!
  const port = integer(problems, "PORT", read("port")!, { min: 0, max: 65535 })
  const databaseUrl = read("database-url")
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push("DATABASE_URL must be a postgres:// or postgresql:// URL")
  }
  const apiKeys = parseApiKeys(problems, read("api-keys"))
  const insecureAnonymous = ["1", "true", "yes"].includes(
    (read("insecure-allow-anonymous") ?? "").toLowerCase()
  )
  // Whether stored keys exist is known only once the database is open: the
  // refusal of anonymous access on other addresses is made by `Server.start`.
  const jwt = parseJwt(problems, read)
  const publicModel = read("public-model")!
  if (publicModel.trim() === "") problems.push("CONVOKE_PUBLIC_MODEL must not be empty")
  const logFormat = read("log-format")!.trim().toLowerCase()
  if (logFormat !== "pretty" && logFormat !== "json" && logFormat !== "off") {
    problems.push(`CONVOKE_LOG_FORMAT must be pretty, json or off, got "${logFormat}"`)
  }
  const otlpUrl = read("otlp-url")
  if (otlpUrl !== undefined && !/^https?:\/\//.test(otlpUrl)) {
    problems.push("OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL")
  }
  const observability = {
    metrics: parseMetrics(problems, read("metrics")!, host),
    logFormat: logFormat as Settings["logFormat"],
    otlpUrl: otlpUrl?.replace(/\/+$/, "")
  }
  const settings: Settings = {
    host,
    port,
    databaseUrl,
    dataDir: read("data-dir")!,
    apiKeys,
    insecureAnonymous,
    publicModel,
    maxBodyBytes: integer(problems, "CONVOKE_MAX_BODY_BYTES", read("max-body-bytes")!, {
      min: 256,
      max: 16 * 1024 * 1024
    }),
    heartbeatSeconds: integer(problems, "CONVOKE_HEARTBEAT_SECONDS", read("heartbeat-seconds")!, {
      min: 1,
      max: 3600
    }),
    echoDelayMs: integer(problems, "CONVOKE_ECHO_DELAY_MS", read("echo-delay-ms")!, { min: 0, max: 60_000 }),
    shutdownGraceMs: integer(problems, "CONVOKE_SHUTDOWN_GRACE_MS", read("shutdown-grace-ms")!, {
      min: 0,
      max: 600_000
    }),
    creationBudgetMs: integer(problems, "CONVOKE_CREATION_BUDGET_MS", read("creation-budget-ms")!, {
      min: 1,
      max: 60_000
    }),
    outboxCapacity: integer(problems, "CONVOKE_OUTBOX_CAPACITY", read("outbox-capacity")!, {
      min: 0,
      max: 10_000_000
    }),
    cleanupIntervalMinutes: integer(
      problems,
      "CONVOKE_CLEANUP_INTERVAL_MINUTES",
      read("cleanup-interval-minutes")!,
      {
        min: 0,
        max: 10_080
      }
    ),
    abandonedAfterHours: integer(problems, "CONVOKE_ABANDONED_AFTER_HOURS", read("abandoned-after-hours")!, {
      min: 1,
      max: 87_600
    }),
    anthropic: parseAnthropic(problems, read),
    ...observability,
    jwt,
    corsOrigins: parseOrigins(problems, read("cors-origins")),
    redisUrl: parseRedisUrl(problems, read("redis-url")),
    redisPrefix: read("redis-prefix")!,
    rateLimit: {
      userRequests: integer(problems, "CONVOKE_RATE_LIMIT_REQUESTS", read("rate-limit-requests")!, {
        min: 0,
        max: 1_000_000
      }),
      addressRequests: integer(
        problems,
        "CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS",
        read("rate-limit-address-requests")!,
        { min: 0, max: 1_000_000 }
      ),
      windowSeconds: integer(
        problems,
        "CONVOKE_RATE_LIMIT_WINDOW_SECONDS",
        read("rate-limit-window-seconds")!,
        {
          min: 1,
          max: 86_400
        }
      ),
      concurrent: integer(problems, "CONVOKE_RATE_LIMIT_CONCURRENT", read("rate-limit-concurrent")!, {
        min: 0,
        max: 10_000
      })
    },
    maxMessageCharacters: integer(
      problems,
      "CONVOKE_MAX_MESSAGE_CHARACTERS",
      read("max-message-characters")!,
      { min: 1, max: 16 * 1024 * 1024 }
    ),
    maxJsonDepth: integer(problems, "CONVOKE_MAX_JSON_DEPTH", read("max-json-depth")!, { min: 1, max: 1000 }),
    maxHeaderBytes: integer(problems, "CONVOKE_MAX_HEADER_BYTES", read("max-header-bytes")!, {
      min: 1024,
      max: 1024 * 1024
    }),
    webDir: read("web-dir") === "off" ? undefined : resolve(read("web-dir") ?? WEB_DEMO_DIR)
  }
  if (problems.length > 0) throw new SettingsError(problems)
  return settings
}

const parseAnthropic = (
  problems: Array<string>,
  read: (flag: string) => string | undefined
): AnthropicSettings | undefined => {
  const apiKey = read("anthropic-api-key")?.trim()
  if (apiKey === undefined || apiKey === "") return undefined
  const baseUrl = read("anthropic-base-url")
  if (baseUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(baseUrl)) {
    problems.push("ANTHROPIC_BASE_URL must be an http:// or https:// URL")
  }
  let models: Record<string, string> = {}
  try {
    models = AnthropicModels.parseAliases(read("anthropic-models") ?? "")
  } catch (error) {
    problems.push(`CONVOKE_ANTHROPIC_MODELS: ${(error as Error).message}`)
  }
  const model = read("anthropic-model")
  if (model !== undefined && model.trim() === "") problems.push("ANTHROPIC_MODEL must not be empty")
  return {
    apiKey: Redacted.make(apiKey),
    baseUrl,
    model,
    models,
    maxTokens: integer(problems, "ANTHROPIC_MAX_TOKENS", read("anthropic-max-tokens")!, {
      min: 1,
      max: 1_000_000
    }),
    systemPrompt: read("system-prompt"),
    idleTimeoutMs: integer(problems, "CONVOKE_MODEL_IDLE_TIMEOUT_MS", read("model-idle-timeout-ms")!, {
      min: 10,
      max: 3_600_000
    }),
    maxRetries: integer(problems, "CONVOKE_MODEL_MAX_RETRIES", read("model-max-retries")!, {
      min: 0,
      max: 10
    }),
    retryDelayMs: integer(problems, "CONVOKE_MODEL_RETRY_DELAY_MS", read("model-retry-delay-ms")!, {
      min: 0,
      max: 60_000
    }),
    historyMaxMessages: integer(problems, "CONVOKE_HISTORY_MAX_MESSAGES", read("history-max-messages")!, {
      min: 1,
      max: 100_000
    }),
    historyMaxCharacters: integer(
      problems,
      "CONVOKE_HISTORY_MAX_CHARACTERS",
      read("history-max-characters")!,
      {
        min: 1000,
        max: 100_000_000
      }
    )
  }
}
