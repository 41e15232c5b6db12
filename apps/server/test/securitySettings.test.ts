/**
 * The security settings of the reference server: how they are read and
 * validated, and the refusal of anonymous access off loopback.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { request as httpRequest } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Duration } from "effect"
import { describe, expect, it } from "vitest"
import * as Keys from "../src/Keys.ts"
import { start } from "../src/Server.ts"
import { load, SettingsError } from "../src/Settings.ts"
import { testSettings } from "./helpers.ts"

/** One request over a real socket with the headers given, `Host` included (fetch would set its own). */
const send = (
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string
): Promise<{ readonly status: number; readonly body: string }> =>
  new Promise((resolve, reject) => {
    const request = httpRequest({ host: "127.0.0.1", port, method, path, headers }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() })
      )
      response.on("error", reject)
    })
    request.on("error", reject)
    request.end(body)
  })

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
      CONVOKE_JWT_ISSUER: "https://login.example/",
      CONVOKE_JWT_AUDIENCE: "convoke",
      CONVOKE_JWT_USER_CLAIM: "uid",
      REDIS_URL: "redis://127.0.0.1:6379"
    })
    expect(settings.security.cors).toEqual({
      allowedOrigins: ["https://a.example", "https://b.example:8443"]
    })
    expect(settings.jwt).toMatchObject({
      jwksUrl: "https://login.example/.well-known/jwks.json",
      issuer: "https://login.example/",
      audience: "convoke",
      userClaim: "uid",
      userIds: "namespaced",
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
    // With a JWKS, the accepted issuer and audience must be set.
    expect(found.join("\n")).toMatch(/CONVOKE_JWT_ISSUER \(--jwt-issuer\) must be set/)
    expect(found.join("\n")).toMatch(/CONVOKE_JWT_AUDIENCE \(--jwt-audience\) must be set/)
    expect(
      problems({ CONVOKE_JWT_SECRET: "x".repeat(32), CONVOKE_JWT_USER_IDS: "mixed" }).join("\n")
    ).toMatch(/CONVOKE_JWT_USER_IDS \(--jwt-user-ids\) must be namespaced or claim/)
    expect(load([], { CONVOKE_JWT_SECRET: "x".repeat(32), CONVOKE_JWT_USER_IDS: "claim" }).jwt?.userIds).toBe(
      "claim"
    )
    expect(found.join("\n")).toMatch(
      /CONVOKE_CORS_ORIGINS \(--cors-origins\) .*"https:\/\/bad\.example\/path" is not an origin/
    )
    expect(found.join("\n")).toMatch(/REDIS_URL \(--redis-url\) must be/)
    expect(found.join("\n")).toMatch(/CONVOKE_RATE_LIMIT_REQUESTS \(--rate-limit-requests\) must be/)
    expect(found.join("\n")).toMatch(/CONVOKE_MAX_HEADER_BYTES \(--max-header-bytes\) must be/)
  })

  it("serve anonymous requests to loopback hosts and same-origin pages only (DNS rebinding, CSRF)", async () => {
    const server = await start(
      testSettings({ security: { securityHeaders: true, cors: { allowedOrigins: ["https://app.example"] } } })
    )
    try {
      expect(server.anonymous).toBe(true)
      const own = `http://127.0.0.1:${server.port}`
      const post = (headers: Record<string, string>) =>
        send(
          server.port,
          "POST",
          "/api/v0.3/chat",
          { "content-type": "application/json", ...headers },
          '{"message":"hi"}'
        )
      const get = (headers: Record<string, string>) =>
        send(server.port, "GET", "/api/v0.3/conversations", headers)
      // A page rebound to 127.0.0.1 still names its own host: refused, reading and writing alike.
      for (const answer of [
        await get({ host: "evil.example" }),
        await get({ host: `evil.example:${server.port}` }),
        await post({ host: "evil.example", origin: "http://evil.example" })
      ]) {
        expect(answer.status).toBe(403)
        expect(JSON.parse(answer.body)).toMatchObject({ error: { type: "forbidden" } })
      }
      // Another site's page posting to the loopback server (CSRF): refused, and nothing is stored.
      const csrf = await post({ host: `127.0.0.1:${server.port}`, origin: "https://evil.example" })
      expect(csrf.status).toBe(403)
      expect(JSON.parse(csrf.body)).toMatchObject({ error: { type: "forbidden" } })
      expect(JSON.parse((await get({ host: `127.0.0.1:${server.port}` })).body).data).toEqual([])
      // The server's own pages, the CORS allow-list, and clients that send no Origin are served.
      expect((await post({ host: `127.0.0.1:${server.port}`, origin: own })).status).toBe(200)
      expect(
        (await post({ host: `localhost:${server.port}`, origin: `http://localhost:${server.port}` })).status
      ).toBe(200)
      expect((await post({ host: `127.0.0.1:${server.port}`, origin: "https://app.example" })).status).toBe(
        200
      )
      expect((await post({ host: `[::1]:${server.port}` })).status).toBe(200)
    } finally {
      await server.close()
    }
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
