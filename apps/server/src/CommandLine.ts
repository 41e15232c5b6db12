/**
 * The reference server's command line: every setting's flag, the variable it
 * stands for, and its help. Flags are read into a `ConfigProvider` placed in
 * front of the environment, so a flag wins over its variable and the settings
 * are read the same way from either.
 */
import { readFileSync } from "node:fs"
import { relative } from "node:path"
import { parseArgs } from "node:util"
import * as AnthropicModels from "@convoke/anthropic/models"
import * as ConfigProvider from "effect/ConfigProvider"
import type { Problem } from "./ConfigProblems.ts"
import { WEB_DEMO_DIR } from "./StaticFiles.ts"

/** One setting on the command line: its flag, its environment variable, its default and meaning. */
export interface Option {
  readonly flag: string
  readonly env: string
  readonly type: "string" | "boolean"
  readonly description: string
  /** The default as the help shows it; the setting's `Config` applies it (a test keeps the two equal). */
  readonly fallback?: string
  /** Read from the environment only (secrets stay out of the process list). */
  readonly envOnly?: boolean
  /**
   * Holds a secret (`always`), or a URL that does when it carries a password
   * (`password`). Also read from a file: `--<flag>-file <path>` or
   * `<VARIABLE>_FILE=<path>`. The flag itself is shown by `ps` to every user
   * of the machine: still accepted, with a warning (`secretWarnings`).
   */
  readonly secret?: "always" | "password"
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
    secret: "password",
    type: "string",
    description: "PostgreSQL URL; without it an embedded PGlite database is used"
  },
  {
    flag: "data-dir",
    env: "CONVOKE_DATA_DIR",
    type: "string",
    fallback: "./.convoke/data",
    description: "Directory of the embedded database, and of the outbox journal without Redis"
  },
  {
    flag: "api-keys",
    env: "CONVOKE_API_KEYS",
    secret: "always",
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
    secret: "always",
    type: "string",
    description: "Accept HS256 JWTs signed with this secret (at least 32 bytes)"
  },
  {
    flag: "jwks-url",
    env: "CONVOKE_JWKS_URL",
    type: "string",
    description: "Accept RS/PS/ES/EdDSA JWTs signed by a key of this JWKS URL"
  },
  {
    flag: "jwt-issuer",
    env: "CONVOKE_JWT_ISSUER",
    type: "string",
    description: "Required JWT iss claim (must be set with --jwks-url)"
  },
  {
    flag: "jwt-audience",
    env: "CONVOKE_JWT_AUDIENCE",
    type: "string",
    description: "Required JWT aud claim (must be set with --jwks-url)"
  },
  {
    flag: "jwt-user-claim",
    env: "CONVOKE_JWT_USER_CLAIM",
    type: "string",
    fallback: "sub",
    description: "JWT claim holding the user id"
  },
  {
    flag: "jwt-user-ids",
    env: "CONVOKE_JWT_USER_IDS",
    type: "string",
    fallback: "namespaced",
    description:
      "namespaced: a JWT user is jwt:<iss>:<claim>, never an API key's user; claim: the claim alone, shared with API key users"
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
    secret: "password",
    type: "string",
    description:
      "Redis URL; rate limits, the turn log (resume, stop) and the outbox are then shared by every instance using it"
  },
  {
    flag: "turn-log-prefix",
    env: "CONVOKE_TURN_LOG_PREFIX",
    type: "string",
    fallback: "convoke:turns:",
    description: "Key prefix of the turn log in Redis"
  },
  {
    flag: "turn-log-max-mb",
    env: "CONVOKE_TURN_LOG_MAX_MB",
    type: "string",
    fallback: "64",
    description:
      "Memory the turns kept in this process's turn log may take, estimated, in MiB; ended turns go first"
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
    description: "Requests per window per user, on every route (0: no limit)"
  },
  {
    flag: "rate-limit-address-requests",
    env: "CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS",
    type: "string",
    fallback: "60",
    description: "Requests per window per client address of anonymous callers (0: no limit)"
  },
  {
    flag: "rate-limit-auth-failures",
    env: "CONVOKE_RATE_LIMIT_AUTH_FAILURES",
    type: "string",
    fallback: "30",
    description:
      "Failed authentications per window per client address and per key prefix; past it, 429 before credentials are checked (0: no limit)"
  },
  {
    flag: "rate-limit-ipv6-prefix",
    env: "CONVOKE_RATE_LIMIT_IPV6_PREFIX",
    type: "string",
    fallback: "64",
    description: "IPv6 clients are counted per network of this prefix length"
  },
  {
    flag: "rate-limit-max-keys",
    env: "CONVOKE_RATE_LIMIT_MAX_KEYS",
    type: "string",
    fallback: "100000",
    description: "Most rate-limit counters kept in memory (idle ones are forgotten first)"
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
    description: "Chat turns (chat, resume) in flight per user (0: no limit)"
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
    flag: "headers-timeout-ms",
    env: "CONVOKE_HEADERS_TIMEOUT_MS",
    type: "string",
    fallback: "20000",
    description: "Longest time a request line and headers may take to arrive (408 past it)"
  },
  {
    flag: "body-timeout-ms",
    env: "CONVOKE_BODY_TIMEOUT_MS",
    type: "string",
    fallback: "60000",
    description: "Longest time a request body may take to arrive (408 past it)"
  },
  {
    flag: "drain-timeout-ms",
    env: "CONVOKE_DRAIN_TIMEOUT_MS",
    type: "string",
    fallback: "30000",
    description: "How long a stream waits for a client that reads nothing before disconnecting it"
  },
  {
    flag: "max-connections",
    env: "CONVOKE_MAX_CONNECTIONS",
    type: "string",
    fallback: "10000",
    description: "Most open connections (one more gets a 503)"
  },
  {
    flag: "keep-alive-timeout-ms",
    env: "CONVOKE_KEEP_ALIVE_TIMEOUT_MS",
    type: "string",
    fallback: "65000",
    description: "How long an idle keep-alive connection is kept open"
  },
  {
    flag: "max-requests-per-socket",
    env: "CONVOKE_MAX_REQUESTS_PER_SOCKET",
    type: "string",
    fallback: "1000",
    description: "Most requests one keep-alive connection carries (0: no limit)"
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
    description:
      "Silence of the database before a stream starts on a temporary id (a busy database is waited for)"
  },
  {
    flag: "store-timeout-ms",
    env: "CONVOKE_STORE_TIMEOUT_MS",
    type: "string",
    fallback: "2000",
    description: "Wait for the database before a request that does not stream gets a 503"
  },
  {
    flag: "disconnect-grace-ms",
    env: "CONVOKE_DISCONNECT_GRACE_MS",
    type: "string",
    fallback: "10000",
    description:
      "How long a reply goes on after its client left, for the client to resume it (0: stop at once)"
  },
  {
    flag: "outbox-capacity",
    env: "CONVOKE_OUTBOX_CAPACITY",
    type: "string",
    fallback: "10000",
    description: "Writes kept while the database is unavailable"
  },
  {
    flag: "outbox-user-capacity",
    env: "CONVOKE_OUTBOX_USER_CAPACITY",
    type: "string",
    description:
      "Writes one user may have in the outbox (default a tenth of the capacity; 0: only the capacity bounds them)"
  },
  {
    flag: "outbox-prefix",
    env: "CONVOKE_OUTBOX_PREFIX",
    type: "string",
    fallback: "convoke:outbox:",
    description: "Key prefix of the outbox in Redis; instances sharing it write each other's queued writes"
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
    secret: "always",
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
    flag: "admin-token",
    env: "CONVOKE_ADMIN_TOKEN",
    secret: "always",
    type: "string",
    envOnly: true,
    description:
      "Bearer token for the details of /health and for /metrics on the chat port (at least 16 characters)"
  },
  {
    flag: "metrics",
    env: "CONVOKE_METRICS",
    type: "string",
    fallback: "on",
    description:
      "Prometheus /metrics: on (chat port), off, or [host:]port to serve it, with the details of /health, alone there (the admin port)"
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

/**
 * The settings given on the command line, in front of the environment: a
 * flag wins over its variable. Throws (a `TypeError` of `parseArgs`) on an
 * unknown flag or a missing flag value.
 */
export const provider = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): ConfigProvider.ConfigProvider => {
  const values = parse(argv)
  const fromFlags: Record<string, string> = {}
  for (const option of OPTIONS) {
    const value = values[option.flag]
    if (typeof value === "string") fromFlags[option.env] = value
    else if (value === true) fromFlags[option.env] = "true"
  }
  const fromEnv: Record<string, string | undefined> = { ...env }
  for (const option of OPTIONS.filter((candidate) => candidate.secret !== undefined)) {
    const fileFlag = values[`${option.flag}-file`]
    if (typeof fileFlag === "string") {
      if (fromFlags[option.env] !== undefined)
        throw new TypeError(`--${option.flag} and --${option.flag}-file both give ${option.env}: use one`)
      fromFlags[option.env] = readSecret(fileFlag, `--${option.flag}-file`)
    }
    const fileVariable = env[`${option.env}_FILE`]
    if (fileVariable !== undefined && fileVariable !== "") {
      if (env[option.env] !== undefined && env[option.env] !== "")
        throw new TypeError(`${option.env} and ${option.env}_FILE are both set: use one`)
      fromEnv[option.env] = readSecret(fileVariable, `${option.env}_FILE`)
    }
  }
  return ConfigProvider.orElse(ConfigProvider.fromEnvRecord(fromFlags), ConfigProvider.fromEnvRecord(fromEnv))
}

const parse = (argv: ReadonlyArray<string>) =>
  parseArgs({
    args: [...argv],
    options: Object.fromEntries(
      OPTIONS.flatMap((option) => [
        ...(option.envOnly === true ? [] : [[option.flag, { type: option.type }] as const]),
        ...(option.secret === undefined ? [] : [[`${option.flag}-file`, { type: "string" }] as const])
      ])
    ),
    strict: true,
    allowPositionals: false
  }).values as Record<string, string | boolean | undefined>

/**
 * A secret file's content, without the line end editors and `echo` leave at
 * its end; throws a `TypeError` naming `source` (the variable or flag) when
 * the file cannot be read.
 */
export const readSecret = (path: string, source: string): string => {
  try {
    return readFileSync(path, "utf8").replace(/[\r\n]+$/, "")
  } catch (error) {
    throw new TypeError(
      `${source}: ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? error})`
    )
  }
}

const hasPassword = (raw: string): boolean => {
  try {
    return new URL(raw).password !== ""
  } catch {
    return false
  }
}

/**
 * Warnings for the secrets given as flags: `ps` shows a process's arguments
 * to every user of the machine. The value is never repeated.
 */
export const secretWarnings = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const values = parse(argv)
  return OPTIONS.flatMap((option) => {
    const value = values[option.flag]
    if (option.secret === undefined || typeof value !== "string") return []
    if (option.secret === "password" && !hasPassword(value)) return []
    return [
      `--${option.flag} puts a secret in the process list, where every user of this machine can read it: set ${option.env} or ${option.env}_FILE, or pass --${option.flag}-file, instead`
    ]
  })
}

/**
 * A problem in words: the variable, its flag, and what is wrong, e.g.
 * `PORT (--port) must be a whole number from 0 to 65535, got "70000"`.
 */
export const describeProblem = (problem: Problem): string => {
  if (problem.variable === undefined) return problem.message
  const option = OPTIONS.find((candidate) => candidate.env === problem.variable)
  const flag = option === undefined || option.envOnly === true ? "" : ` (--${option.flag})`
  return `${problem.variable}${flag} ${problem.message}`
}

/** The help text of the CLI, one line per option. */
export const help = (): string =>
  [
    "Usage: convoke [options]",
    "",
    "Starts the Convoke reference server. Every option can also be set by environment variable.",
    "",
    ...OPTIONS.map(
      (option) =>
        `  ${option.envOnly === true ? "(environment only)".padEnd(28) : `--${option.flag.padEnd(26)}`} ${option.env.padEnd(34)} ${option.description}${option.fallback === undefined ? "" : ` (default ${option.fallback})`}${option.secret === undefined ? "" : `; from a file: --${option.flag}-file or ${option.env}_FILE`}`
    ),
    "  --help                     Show this help"
  ].join("\n")
