/**
 * The command line and the settings' configs describe the same settings:
 * every variable a config reads has a flag (or is marked environment-only)
 * and a line in `--help` and in the README, the defaults the help shows are
 * the ones the configs apply, and a flag wins over its variable.
 */
import { readFileSync } from "node:fs"
import { ConfigProvider, Effect } from "effect"
import { describe, expect, it } from "vitest"
import { describeProblem, help, OPTIONS } from "../src/CommandLine.ts"
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
