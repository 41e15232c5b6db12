/**
 * The command line and the settings' configs describe the same settings:
 * every variable a config reads has a flag (or is marked environment-only)
 * and a line in `--help` and in the README, the defaults the help shows are
 * the ones the configs apply, and a flag wins over its variable.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConfigProvider, Effect, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { describeProblem, help, OPTIONS, secretWarnings } from "../src/CommandLine.ts"
import { config, load, type SettingsError } from "../src/Settings.ts"

// Set so that the settings read only with a key or a JWT source are read too.
const GATES = {
  ANTHROPIC_API_KEY: "sk-ant-command-line-0123456789",
  CONVOKE_JWT_SECRET: "a-secret-of-at-least-thirty-two-bytes"
}

/** The variables the settings read, in the order they read them. */
const variablesRead = (env: Record<string, string>): Array<string> => {
  const read: Array<string> = []
  const source = ConfigProvider.fromEnvRecord(env)
  const recording = ConfigProvider.make((path) => {
    read.push(path.map(String).join("_"))
    return source.load(path)
  })
  Effect.runSync(config.parse(recording))
  return read
}

const problems = (argv: ReadonlyArray<string>, env: Record<string, string>): ReadonlyArray<string> => {
  try {
    load(argv, env)
  } catch (error) {
    return (error as SettingsError).problems
  }
  return []
}

describe("the command line", () => {
  it("has an option for every variable the settings read, and no other", () => {
    expect(new Set(variablesRead(GATES))).toEqual(new Set(OPTIONS.map((option) => option.env)))
  })

  it("shows in --help and in the README every option, with its flag", () => {
    const text = help()
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8")
    for (const option of OPTIONS) {
      const flag = option.envOnly === true ? "(environment only)" : `--${option.flag}`
      expect(text, option.env).toMatch(new RegExp(`${flag.replace(/[()]/g, "\\$&")}\\s+${option.env}\\s`))
      expect(readme, option.env).toMatch(
        new RegExp(
          `\\| \`${option.env}\`\\s*\\| ${option.envOnly === true ? "\\(environment only\\)" : `\`${flag}\``}`
        )
      )
    }
  })

  it("shows the defaults the settings apply", () => {
    const defaults = load([], GATES)
    for (const option of OPTIONS.filter((candidate) => candidate.fallback !== undefined)) {
      expect(load([], { ...GATES, [option.env]: option.fallback! }), option.env).toEqual(defaults)
    }
  })

  it("lets a flag win over its variable", () => {
    const settings = load(["--port", "4000", "--insecure-allow-anonymous", "--public-model", "house"], {
      PORT: "5000",
      CONVOKE_INSECURE_ALLOW_ANONYMOUS: "false",
      CONVOKE_PUBLIC_MODEL: "ignored"
    })
    expect(settings.port).toBe(4000)
    expect(settings.insecureAnonymous).toBe(true)
    expect(settings.chat.publicModel).toBe("house")
    // A valid flag hides an invalid variable: the flag is what the server uses.
    expect(problems(["--heartbeat-seconds", "5"], { CONVOKE_HEARTBEAT_SECONDS: "soon" })).toEqual([])
  })

  it("names the variable, its flag and the value expected, each problem once", () => {
    expect(
      problems(["--heartbeat-seconds", "0"], {
        CONVOKE_RATE_LIMIT_WINDOW_SECONDS: "a minute",
        CONVOKE_INSECURE_ALLOW_ANONYMOUS: "maybe",
        ANTHROPIC_API_KEY: "sk-ant-command-line-0123456789",
        ANTHROPIC_MAX_TOKENS: "many"
      })
    ).toEqual([
      'CONVOKE_INSECURE_ALLOW_ANONYMOUS (--insecure-allow-anonymous) must be true or false (yes/no, on/off, 1/0), got "maybe"',
      // Read by both budgets, reported once.
      'CONVOKE_RATE_LIMIT_WINDOW_SECONDS (--rate-limit-window-seconds) must be a whole number from 1 to 86400, got "a minute"',
      'CONVOKE_HEARTBEAT_SECONDS (--heartbeat-seconds) must be a whole number from 1 to 3600, got "0"',
      'ANTHROPIC_MAX_TOKENS (--anthropic-max-tokens) must be a whole number from 1 to 1000000, got "many"'
    ])
  })

  it("names no flag for a variable read from the environment only", () => {
    expect(describeProblem({ variable: "ANTHROPIC_API_KEY", message: "must not be empty" })).toBe(
      "ANTHROPIC_API_KEY must not be empty"
    )
    expect(describeProblem({ variable: "PORT", message: "must be a port" })).toBe(
      "PORT (--port) must be a port"
    )
  })
})

describe("secrets on the command line", () => {
  const SECRETS = [
    "DATABASE_URL",
    "CONVOKE_API_KEYS",
    "CONVOKE_JWT_SECRET",
    "REDIS_URL",
    "ANTHROPIC_API_KEY",
    "CONVOKE_ADMIN_TOKEN"
  ]
  const withFiles = (body: (write: (name: string, content: string) => string) => void) => {
    const directory = mkdtempSync(join(tmpdir(), "convoke-secrets-"))
    try {
      body((name, content) => {
        const path = join(directory, name)
        writeFileSync(path, content)
        return path
      })
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  }

  it("are the API keys, the JWT secret, the database and Redis URLs, the Anthropic key and the admin token", () => {
    expect(OPTIONS.filter((option) => option.secret !== undefined).map((option) => option.env)).toEqual(
      SECRETS
    )
  })

  it("are read from a file named by --<flag>-file or <VARIABLE>_FILE, without the final newline", () => {
    withFiles((write) => {
      const jwtSecret = write("jwt", "a-secret-of-at-least-thirty-two-bytes!\n")
      const keys = write("keys", "key-from-a-file-0123456789-abcdefghijklmnopqrstuvwxyz:alice\r\n")
      const database = write("database", "postgres://convoke:hunter2@db.internal/convoke\n")
      const redis = write("redis", "redis://:hunter2@cache.internal:6379\n")
      const anthropic = write("anthropic", "sk-ant-from-a-file\n")
      const admin = write("admin", "an-admin-token-from-a-file\n")
      const fromFlags = load(
        [
          "--jwt-secret-file",
          jwtSecret,
          "--api-keys-file",
          keys,
          "--database-url-file",
          database,
          "--redis-url-file",
          redis,
          "--anthropic-api-key-file",
          anthropic,
          "--admin-token-file",
          admin
        ],
        {}
      )
      const fromEnv = load([], {
        CONVOKE_JWT_SECRET_FILE: jwtSecret,
        CONVOKE_API_KEYS_FILE: keys,
        DATABASE_URL_FILE: database,
        REDIS_URL_FILE: redis,
        ANTHROPIC_API_KEY_FILE: anthropic,
        CONVOKE_ADMIN_TOKEN_FILE: admin
      })
      for (const settings of [fromFlags, fromEnv]) {
        expect(settings.jwt?.secret).toBe("a-secret-of-at-least-thirty-two-bytes!")
        expect(settings.apiKeys).toEqual([
          { key: "key-from-a-file-0123456789-abcdefghijklmnopqrstuvwxyz", userId: "alice" }
        ])
        expect(settings.databaseUrl).toBe("postgres://convoke:hunter2@db.internal/convoke")
        expect(settings.redisUrl).toBe("redis://:hunter2@cache.internal:6379")
        expect(settings.anthropic?.apiKey.toString()).not.toContain("sk-ant")
        expect(settings.adminToken === undefined ? undefined : Redacted.value(settings.adminToken)).toBe(
          "an-admin-token-from-a-file"
        )
      }
      expect(secretWarnings(["--jwt-secret-file", jwtSecret, "--database-url-file", database])).toEqual([])
      // A secret and its file at once is a mistake, and a file that cannot be read is named.
      expect(() =>
        load([], { CONVOKE_JWT_SECRET: "x".repeat(32), CONVOKE_JWT_SECRET_FILE: jwtSecret })
      ).toThrow(/CONVOKE_JWT_SECRET and CONVOKE_JWT_SECRET_FILE/)
      expect(() => load(["--jwt-secret", "x".repeat(32), "--jwt-secret-file", jwtSecret], {})).toThrow(
        /--jwt-secret and --jwt-secret-file/
      )
      expect(() => load([], { REDIS_URL_FILE: join(jwtSecret, "nope") })).toThrow(
        /REDIS_URL_FILE.*cannot be read/
      )
    })
  })

  it("warn when given as flags, which every user of the machine sees in ps; URLs only with a password", () => {
    const warnings = secretWarnings([
      "--jwt-secret",
      "a-secret-of-at-least-thirty-two-bytes",
      "--api-keys",
      "k:alice",
      "--database-url",
      "postgres://convoke:hunter2@db.internal/convoke",
      "--redis-url",
      "redis://127.0.0.1:6379",
      "--port",
      "0"
    ])
    expect(warnings.map((warning) => warning.split(" ")[0])).toEqual([
      "--database-url",
      "--api-keys",
      "--jwt-secret"
    ])
    expect(warnings[2]).toMatch(/process list.*CONVOKE_JWT_SECRET_FILE.*--jwt-secret-file/)
    expect(warnings.join("\n")).not.toContain("hunter2")
    // Still accepted, so no deployment breaks on upgrade.
    expect(load(["--jwt-secret", "a-secret-of-at-least-thirty-two-bytes"], {}).jwt?.secret).toBe(
      "a-secret-of-at-least-thirty-two-bytes"
    )
    // The Anthropic key has no flag at all, only its file.
    expect(() => load(["--anthropic-api-key", "sk-ant-x"], {})).toThrow()
  })
})
