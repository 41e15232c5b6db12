/**
 * The security settings of the reference server: how they are read and
 * validated, and the refusal of anonymous access off loopback.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Duration } from "effect"
import { describe, expect, it } from "vitest"
import * as Keys from "../src/Keys.ts"
import { start } from "../src/Server.ts"
import { load, SettingsError } from "../src/Settings.ts"
import { testSettings } from "./helpers.ts"

const problems = (env: Record<string, string>) => {
  try {
    load([], env)
  } catch (error) {
    return (error as SettingsError).problems
  }
  return []
}

describe("security settings", () => {
  it("have secure, documented defaults", () => {
    const settings = load([], {})
    expect(settings.jwt).toBeUndefined()
    expect(settings.security).toEqual({ cors: undefined, securityHeaders: true })
    expect(settings.redisUrl).toBeUndefined()
    expect(settings.rateLimit).toEqual({
      user: { limit: 120, window: Duration.seconds(60) },
      address: { limit: 60, window: Duration.seconds(60) },
      failures: { limit: 30, window: Duration.seconds(60) },
      concurrent: 8,
      ipv6Prefix: 64,
      maxKeys: 100_000,
      prefix: "convoke:ratelimit:"
    })
    expect(settings.maxHeaderBytes).toBe(16_384)
    expect(settings.chat.maxJsonDepth).toBe(16)
    expect(settings.chat.maxMessageCharacters).toBe(32_768)
  })

  it("read JWT, CORS and Redis options from flags and environment", () => {
    const settings = load(["--cors-origins", "https://a.example, https://b.example:8443"], {
      CONVOKE_JWKS_URL: "https://login.example/.well-known/jwks.json",
      CONVOKE_JWT_AUDIENCE: "convoke",
      CONVOKE_JWT_USER_CLAIM: "uid",
      REDIS_URL: "redis://127.0.0.1:6379"
    })
    expect(settings.security.cors).toEqual({
      allowedOrigins: ["https://a.example", "https://b.example:8443"]
    })
    expect(settings.jwt).toMatchObject({
      jwksUrl: "https://login.example/.well-known/jwks.json",
      audience: "convoke",
      userClaim: "uid",
      secret: undefined
    })
    expect(settings.redisUrl).toBe("redis://127.0.0.1:6379")
    expect(load([], { CONVOKE_CORS_ORIGINS: "*" }).security.cors).toEqual({ allowedOrigins: "*" })
  })

  it("report every unusable value at once", () => {
    const found = problems({
      CONVOKE_JWT_SECRET: "too-short",
      CONVOKE_JWKS_URL: "ftp://nope",
      CONVOKE_CORS_ORIGINS: "https://ok.example,https://bad.example/path",
      REDIS_URL: "http://not-redis",
      CONVOKE_RATE_LIMIT_REQUESTS: "-1",
      CONVOKE_MAX_HEADER_BYTES: "10"
    })
    expect(found.join("\n")).toMatch(/CONVOKE_JWT_SECRET \(--jwt-secret\) is too short/)
    expect(found.join("\n")).toMatch(/CONVOKE_JWKS_URL \(--jwks-url\) must be/)
    expect(found.join("\n")).toMatch(
      /CONVOKE_CORS_ORIGINS \(--cors-origins\) .*"https:\/\/bad\.example\/path" is not an origin/
    )
    expect(found.join("\n")).toMatch(/REDIS_URL \(--redis-url\) must be/)
    expect(found.join("\n")).toMatch(/CONVOKE_RATE_LIMIT_REQUESTS \(--rate-limit-requests\) must be/)
    expect(found.join("\n")).toMatch(/CONVOKE_MAX_HEADER_BYTES \(--max-header-bytes\) must be/)
  })

  it("refuse anonymous access off loopback before listening, and leave loopback anonymous", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "convoke-settings-"))
    try {
      await expect(start(testSettings({ host: "0.0.0.0", dataDir }))).rejects.toBeInstanceOf(SettingsError)
      const local = await start(testSettings({ dataDir }))
      expect(local.anonymous).toBe(true)
      await local.close()
      // A stored key turns anonymous mode off.
      expect((await Keys.run(["create", "--user", "alice", "--data-dir", dataDir], {})).code).toBe(0)
      const keyed = await start(testSettings({ dataDir }))
      try {
        expect(keyed.anonymous).toBe(false)
        expect(
          (await fetch(`${keyed.url}/api/v0.3/chat`, { method: "POST", body: '{"message":"hi"}' })).status
        ).toBe(401)
      } finally {
        await keyed.close()
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe("rate-limit and API key settings", () => {
  const STRONG = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

  it("refuse a configured API key weaker than a generated one, naming the problem and not the key", () => {
    const weak = "sixteen-plus-but-short"
    const found = problems({ CONVOKE_API_KEYS: `${weak}:alice,${STRONG}:bob,${"x".repeat(50)}:carol` }).join(
      "\n"
    )
    expect(found).toContain(
      'CONVOKE_API_KEYS (--api-keys) must hold keys as strong as generated ones: the key for user "alice" is 22 characters long; keys need at least 43 random characters'
    )
    expect(found).toContain('the key for user "carol" uses only 1 distinct characters')
    expect(found).not.toContain(weak)
    expect(found).not.toContain("bob")
    expect(load([], { CONVOKE_API_KEYS: `${STRONG}:bob` }).apiKeys).toEqual([{ key: STRONG, userId: "bob" }])
  })

  it("read the failed-authentication budget, the IPv6 prefix and the counters' bound from flags and environment", () => {
    const settings = load(["--rate-limit-auth-failures", "5", "--rate-limit-ipv6-prefix", "48"], {
      CONVOKE_RATE_LIMIT_MAX_KEYS: "5000"
    })
    expect(settings.rateLimit.failures).toEqual({ limit: 5, window: Duration.seconds(60) })
    expect(settings.rateLimit.ipv6Prefix).toBe(48)
    expect(settings.rateLimit.maxKeys).toBe(5000)
    expect(problems({ CONVOKE_RATE_LIMIT_IPV6_PREFIX: "8" }).join("\n")).toMatch(
      /CONVOKE_RATE_LIMIT_IPV6_PREFIX \(--rate-limit-ipv6-prefix\) must be a whole number from 16 to 128/
    )
  })
})
