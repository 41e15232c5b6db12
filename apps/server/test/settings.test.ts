/**
 * The Claude settings of the reference server: read from the environment
 * (the key from the environment only), validated, every problem at once.
 */
import { Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { help } from "../src/CommandLine.ts"
import { load, SettingsError } from "../src/Settings.ts"

const KEY = "sk-ant-settings-0123456789abcdef"

describe("Claude settings", () => {
  it("use the echo model when no ANTHROPIC_API_KEY is set", () => {
    expect(load([], {}).anthropic).toBeUndefined()
    expect(load([], { ANTHROPIC_API_KEY: "  " }).anthropic).toBeUndefined()
  })

  it("read the key (redacted), base URL, models, limits and system prompt", () => {
    const settings = load(["--anthropic-max-tokens", "1000", "--system-prompt", "Be kind."], {
      ANTHROPIC_API_KEY: KEY,
      ANTHROPIC_BASE_URL: "http://127.0.0.1:9999",
      ANTHROPIC_MODEL: "claude-opus-5-5",
      CONVOKE_ANTHROPIC_MODELS: "fast=claude-haiku-5-5, smart=claude-opus-5-5",
      CONVOKE_MODEL_IDLE_TIMEOUT_MS: "5000",
      CONVOKE_MODEL_MAX_RETRIES: "0"
    })
    const anthropic = settings.anthropic!
    expect(Redacted.value(anthropic.apiKey)).toBe(KEY)
    expect(String(anthropic.apiKey)).not.toContain(KEY)
    expect(JSON.stringify(settings)).not.toContain(KEY)
    expect(anthropic).toMatchObject({
      baseUrl: "http://127.0.0.1:9999",
      model: "claude-opus-5-5",
      models: { fast: "claude-haiku-5-5", smart: "claude-opus-5-5" },
      maxTokens: 1000,
      systemPrompt: "Be kind.",
      idleTimeoutMs: 5000,
      maxRetries: 0,
      retryDelayMs: 500,
      historyMaxMessages: 100,
      historyMaxCharacters: 400000
    })
  })

  it("take the key from the environment or a file only, never from a flag", () => {
    expect(() => load(["--anthropic-api-key", KEY], {})).toThrow()
    expect(help()).toContain("ANTHROPIC_API_KEY")
    expect(help()).not.toMatch(/--anthropic-api-key(?!-file)/)
  })

  it("report every invalid value at once", () => {
    let error: SettingsError | undefined
    try {
      load([], {
        ANTHROPIC_API_KEY: KEY,
        ANTHROPIC_BASE_URL: "ftp://nope",
        CONVOKE_ANTHROPIC_MODELS: "fast",
        ANTHROPIC_MAX_TOKENS: "0",
        CONVOKE_MODEL_IDLE_TIMEOUT_MS: "soon"
      })
    } catch (caught) {
      error = caught as SettingsError
    }
    expect(error).toBeInstanceOf(SettingsError)
    expect(error!.problems).toHaveLength(4)
    expect(error!.message).toContain("ANTHROPIC_BASE_URL")
    expect(error!.message).toContain("CONVOKE_ANTHROPIC_MODELS")
    expect(error!.message).toContain("ANTHROPIC_MAX_TOKENS")
    expect(error!.message).toContain("CONVOKE_MODEL_IDLE_TIMEOUT_MS")
    expect(error!.message).not.toContain(KEY)
  })
})
