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
      concurrent: 8,
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

describe("the outbox's share per user", () => {
  it("defaults to a tenth of the capacity, reads CONVOKE_OUTBOX_USER_CAPACITY, and shows in the banner", async () => {
    expect(load([], {}).outboxUserCapacity).toBeUndefined()
    expect(load(["--outbox-user-capacity", "50"], {}).outboxUserCapacity).toBe(50)
    expect(load([], { CONVOKE_OUTBOX_USER_CAPACITY: "0" }).outboxUserCapacity).toBe(0)
    expect(problems({ CONVOKE_OUTBOX_USER_CAPACITY: "-1" }).join(" ")).toContain(
      "CONVOKE_OUTBOX_USER_CAPACITY"
    )
    const server = await start(testSettings({ outboxCapacity: 300 }))
    try {
      expect(server.summary.find(([label]) => label === "outbox")![1]).toContain(
        "300 writes at most (30 per user)"
      )
    } finally {
      await server.close()
    }
  })
})
