/**
 * Identity and the HTTP surface over real sockets, against the reference
 * server on a real PostgreSQL database: stored API keys managed with the CLI,
 * configured keys, JWTs (HS256 and a JWKS served from loopback, with key
 * rotation), user isolation on every conversation endpoint, CORS, security
 * headers and header limits.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeTestDatabase, type TestDatabase } from "@convoke/store-pg/testing"
import * as jose from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Keys from "../src/Keys.ts"
import type { RunningServer } from "../src/Server.ts"
import { chat, events, frames, query, readAll, startServer } from "./helpers.ts"

const SECRET = "an-hs256-secret-for-the-security-tests"
const ISSUER = "https://issuer.test"
const AUDIENCE = "convoke-tests"
const CONFIGURED_KEY = "configured-key-0123456789abcdef-ghijklmnopqrstuvwxyz"

let database: TestDatabase
let server: RunningServer
let jwks: Server
let jwksUrl: string
let published: Array<jose.JWK> = []
const signingKeys: Record<string, CryptoKeyPair> = {}

const publicJwk = async (kid: string) => ({
  ...(await jose.exportJWK(signingKeys[kid]!.publicKey)),
  kid,
  alg: "RS256",
  use: "sig"
})

const rs256 = (claims: jose.JWTPayload, kid: string, expiresIn: string | number = "5m") =>
  new jose.SignJWT(claims)
    .setProtectedHeader({ alg: "RS256", kid })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(signingKeys[kid]!.privateKey)

const hs256 = (claims: jose.JWTPayload) =>
  new jose.SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(SECRET))

const bearer = (credential: string) => ({ headers: { authorization: `Bearer ${credential}` } })

const keys = (...argv: Array<string>) => Keys.run(argv, { DATABASE_URL: database.url })

beforeAll(async () => {
  database = await makeTestDatabase()
  for (const kid of ["key-1", "key-2"]) {
    signingKeys[kid] = (await jose.generateKeyPair("RS256", { extractable: true })) as CryptoKeyPair
  }
  published = [await publicJwk("key-1")]
  jwks = createServer((_, response) => {
    response.writeHead(200, { "content-type": "application/json" })
    response.end(JSON.stringify({ keys: published }))
  })
  await new Promise<void>((resolve) => jwks.listen(0, "127.0.0.1", resolve))
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`
  server = await startServer({
    databaseUrl: database.url,
    apiKeys: [{ key: CONFIGURED_KEY, userId: "configured-user" }],
    jwt: {
      secret: SECRET,
      jwksUrl,
      issuer: ISSUER,
      audience: AUDIENCE,
      userClaim: "sub",
      userIds: "namespaced",
      jwksCooldownSeconds: 0
    },
    security: { securityHeaders: true, cors: { allowedOrigins: ["https://app.example"] } }
  })
})

afterAll(async () => {
  await server?.close()
  await new Promise((resolve) => jwks?.close(resolve))
  await database?.drop()
})

const status = async (response: Response) => {
  await response.arrayBuffer()
  return response.status
}

describe("stored API keys, managed with `convoke keys`", () => {
  it("creates a key shown once, accepts it in both header forms, lists it without the secret, and revokes it", async () => {
    const created = await keys("create", "--user", "alice", "--label", "laptop")
    expect(created.code).toBe(0)
    const key = created.stdout.trim()
    expect(key).toMatch(/^cvk_[A-Za-z0-9_-]{43}$/)
    expect(created.stderr).toMatch(/shown only this once/)

    const viaBearer = await chat(server, { message: "hello" }, bearer(key))
    expect(viaBearer.status).toBe(200)
    const first = await viaBearer.json()
    const viaHeader = await chat(
      server,
      { message: "again", conversation_id: first.conversation_id },
      { headers: { "x-api-key": key } }
    )
    expect(viaHeader.status).toBe(200)
    // Same user: the conversation resumes.
    expect((await viaHeader.json()).conversation_id).toBe(first.conversation_id)

    const listed = await keys("list", "--user", "alice")
    expect(listed.code).toBe(0)
    expect(listed.stdout).toContain("laptop")
    expect(listed.stdout).toContain("active")
    expect(listed.stdout).not.toContain(key)
    const id = /^([0-9a-f-]{36})\s+alice/m.exec(listed.stdout)![1]!
    const stored = await query<{ digest: string }>(database.url, "SELECT digest FROM convoke_api_keys")
    expect(JSON.stringify(stored)).not.toContain(key.slice(4))

    const revoked = await keys("revoke", id)
    expect(revoked.code).toBe(0)
    for (const init of [bearer(key), { headers: { "x-api-key": key } }]) {
      const refused = await chat(server, { message: "after revoke" }, init)
      expect(refused.status).toBe(401)
      expect(await refused.json()).toEqual({ error: { type: "unauthenticated", message: "Invalid API key" } })
    }
    expect((await keys("revoke", id)).code).toBe(1)
    expect((await keys("list")).stdout).toMatch(/revoked/)
  })

  it("reads the database URL from a file, as the server does", async () => {
    const directory = await mkdtemp(join(tmpdir(), "convoke-keys-"))
    try {
      const path = join(directory, "database-url")
      await writeFile(path, `${database.url}\n`)
      for (const [argv, env] of [
        [["list"], { DATABASE_URL_FILE: path }],
        [["list", "--database-url-file", path], {}]
      ] as const) {
        const listed = await Keys.run(argv, env)
        expect(listed.stderr).toBe("")
        expect(listed.code).toBe(0)
      }
      expect((await Keys.run(["list"], { DATABASE_URL_FILE: join(directory, "missing") })).stderr).toMatch(
        /DATABASE_URL_FILE: .* cannot be read/
      )
    } finally {
      await rm(directory, { recursive: true, force: true })
    }
  })

  it("explains its usage", async () => {
    const missing = await keys("create")
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("--user")
    expect((await keys("frobnicate")).code).toBe(2)
  })

  it("keeps keys from configuration working beside stored ones", async () => {
    expect(await status(await chat(server, { message: "hi" }, bearer(CONFIGURED_KEY)))).toBe(200)
    expect(
      await status(await chat(server, { message: "hi" }, { headers: { "x-api-key": CONFIGURED_KEY } }))
    ).toBe(200)
    expect(await status(await chat(server, { message: "hi" }, bearer("configured-key-but-wrong")))).toBe(401)
    expect(await status(await chat(server, { message: "hi" }))).toBe(401)
  })
})

describe("JWTs", () => {
  const claims = { sub: "jwt-user", iss: ISSUER, aud: AUDIENCE }

  it("accepts RS256 tokens from the JWKS and HS256 tokens from the secret, in both header forms", async () => {
    const token = await rs256(claims, "key-1")
    const response = await chat(server, { message: "hi" }, bearer(token))
    expect(response.status).toBe(200)
    const { conversation_id } = await response.json()
    const resumed = await chat(
      server,
      { message: "hi", conversation_id },
      { headers: { "x-api-key": await hs256(claims) } }
    )
    expect((await resumed.json()).conversation_id).toBe(conversation_id)
  })

  it("refuses expired, misaddressed and forged tokens with a 401", async () => {
    const now = Math.floor(Date.now() / 1000)
    const forger = await jose.generateKeyPair("RS256")
    const cases: Array<[string, string, RegExp]> = [
      ["expired", await rs256(claims, "key-1", now - 3600), /expired/],
      ["wrong audience", await rs256({ ...claims, aud: "another-service" }, "key-1"), /"aud"/],
      ["wrong issuer", await hs256({ ...claims, iss: "https://elsewhere.test" }), /"iss"/],
      [
        "wrong signature",
        await new jose.SignJWT(claims)
          .setProtectedHeader({ alg: "RS256", kid: "key-1" })
          .setExpirationTime("5m")
          .sign(forger.privateKey),
        /signature/
      ]
    ]
    for (const [name, token, message] of cases) {
      const response = await chat(server, { message: "hi" }, bearer(token))
      expect(response.status, name).toBe(401)
      const body = await response.json()
      expect(body.error.type, name).toBe("unauthenticated")
      expect(body.error.message, name).toMatch(message)
    }
  })

  it("accepts a token with an unknown kid once the issuer has rotated its JWKS", async () => {
    const token = await rs256(claims, "key-2")
    // Not yet published: the refetch finds no such key.
    expect(await status(await chat(server, { message: "hi" }, bearer(token)))).toBe(401)
    // The issuer rotates: key-2 is published, key-1 withdrawn.
    published = [await publicJwk("key-2")]
    expect(await status(await chat(server, { message: "hi" }, bearer(token)))).toBe(200)
    // A fresh token signed with the withdrawn key fails once the set has been refetched.
    expect(await status(await chat(server, { message: "hi" }, bearer(await rs256(claims, "key-1"))))).toBe(
      401
    )
  })
})

/**
 * One row per endpoint that takes a conversation id. Each probe runs as Bob
 * against Alice's conversation and against an id nobody owns: the answers must
 * be the same (status, body), and Alice's conversation must be unchanged. Add a
 * row for every new endpoint that reads or changes a conversation.
 */
interface Probe {
  readonly name: string
  readonly run: (as: { headers: Record<string, string> }, conversationId: string) => Promise<Response>
  /** Whether the answer may differ between the two ids in a way that is not a leak (new ids). */
  readonly normalise?: (body: string) => string
}

const api = (path: string, method: string, as: { headers: Record<string, string> }, body?: unknown) =>
  fetch(`${server.url}${path}`, {
    method,
    headers: { "content-type": "application/json", ...as.headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g
const withoutVolatile = (body: string) =>
  body
    .replace(UUID, "<uuid>")
    .replace(/"timestamp":\d+/g, '"timestamp":0')
    .replace(/"created_at":"[^"]+"/g, "")

const probes: ReadonlyArray<Probe> = [
  {
    name: "POST /api/v0.3/chat, stream: false (resume)",
    run: (as, id) => chat(server, { message: "let me in", conversation_id: id }, as)
  },
  {
    name: "POST /api/v0.3/chat, stream: true (resume)",
    run: (as, id) => chat(server, { message: "let me in", conversation_id: id, stream: true }, as),
    normalise: withoutVolatile
  },
  {
    name: "GET /api/v0.3/conversations/:id",
    run: (as, id) => api(`/api/v0.3/conversations/${id}`, "GET", as)
  },
  {
    name: "GET /api/v0.3/conversations/:id/messages",
    run: (as, id) => api(`/api/v0.3/conversations/${id}/messages`, "GET", as)
  },
  {
    name: "PATCH /api/v0.3/conversations/:id (rename)",
    run: (as, id) => api(`/api/v0.3/conversations/${id}`, "PATCH", as, { title: "pwned" })
  },
  {
    name: "DELETE /api/v0.3/conversations/:id",
    run: (as, id) => api(`/api/v0.3/conversations/${id}`, "DELETE", as)
  }
]

describe("isolation: Bob can neither read, resume, rename nor delete Alice's conversation, nor tell it exists", () => {
  let alice: { headers: Record<string, string> }
  let bob: { headers: Record<string, string> }
  let aliceConversation: string
  const snapshot = () =>
    query<{ title: string; messages: string }>(
      database.url,
      "SELECT c.title, (SELECT count(*) FROM convoke_messages m WHERE m.conversation_id = c.id)::text AS messages FROM convoke_conversations c WHERE c.id = $1",
      [aliceConversation]
    )

  beforeAll(async () => {
    alice = bearer((await keys("create", "--user", "iso-alice")).stdout.trim())
    bob = bearer(await hs256({ sub: "iso-bob", iss: ISSUER, aud: AUDIENCE }))
    const response = await chat(server, { message: "Alice's secret plans" }, alice)
    aliceConversation = (await response.json()).conversation_id
  })

  for (const probe of probes) {
    it(probe.name, async () => {
      const before = await snapshot()
      const nobodys = crypto.randomUUID()
      const againstAlice = await probe.run(bob, aliceConversation)
      const againstNobody = await probe.run(bob, nobodys)
      const normalise = probe.normalise ?? ((body: string) => body)
      const aliceText = await againstAlice.text()
      const nobodyText = await againstNobody.text()
      expect(againstAlice.status).toBe(againstNobody.status)
      expect(againstAlice.status).toBeLessThan(500)
      expect(normalise(aliceText.replaceAll(aliceConversation, "<id>"))).toBe(
        normalise(nobodyText.replaceAll(nobodys, "<id>"))
      )
      expect(aliceText).not.toContain("secret plans")
      if (againstAlice.headers.get("content-type")?.startsWith("text/event-stream")) {
        // A stream never continues Alice's conversation: it starts a new one.
        expect(events(frames(aliceText))[0]!.conversation_id).not.toBe(aliceConversation)
      }
      expect(await snapshot()).toEqual(before)
    })
  }

  it("GET /api/v0.3/conversations (list) never shows Alice's conversation to Bob", async () => {
    const response = await api("/api/v0.3/conversations", "GET", bob)
    expect(response.status).toBeLessThan(500)
    expect(await response.text()).not.toContain(aliceConversation)
  })

  it("Alice still owns it", async () => {
    const response = await chat(server, { message: "still mine", conversation_id: aliceConversation }, alice)
    expect(response.status).toBe(200)
    expect((await response.json()).conversation_id).toBe(aliceConversation)
  })
})

describe("identities: a JWT whose subject names an API key's user is another user", () => {
  it("cannot read, list or resume the key user's conversation: 404 exactly like a missing one", async () => {
    const storedKey = bearer((await keys("create", "--user", "alice")).stdout.trim())
    for (const [owner, sub] of [
      [storedKey, "alice"],
      [bearer(CONFIGURED_KEY), "configured-user"]
    ] as const) {
      const created = await chat(server, { message: "the key user's notes" }, owner)
      expect(created.status).toBe(200)
      const id = (await created.json()).conversation_id as string
      for (const token of [
        await hs256({ sub, iss: ISSUER, aud: AUDIENCE }),
        await rs256({ sub, iss: ISSUER, aud: AUDIENCE }, published[0]!.kid!)
      ]) {
        const impostor = bearer(token)
        const theirs = await api(`/api/v0.3/conversations/${id}`, "GET", impostor)
        const missing = await api(`/api/v0.3/conversations/${crypto.randomUUID()}`, "GET", impostor)
        expect(theirs.status, sub).toBe(404)
        expect(await theirs.text(), sub).toBe(await missing.text())
        expect(await (await api("/api/v0.3/conversations", "GET", impostor)).text(), sub).not.toContain(id)
        const resumed = await chat(server, { message: "mine now?", conversation_id: id }, impostor)
        expect(resumed.status, sub).toBe(404)
        await resumed.arrayBuffer()
      }
      // The key user still owns it.
      expect((await api(`/api/v0.3/conversations/${id}`, "GET", owner)).status).toBe(200)
    }
  })

  it("stores a JWT user under an id namespaced by provider and issuer", async () => {
    const response = await chat(
      server,
      { message: "who am I" },
      bearer(await hs256({ sub: "ns-user", iss: ISSUER, aud: AUDIENCE }))
    )
    const id = (await response.json()).conversation_id as string
    const rows = await query<{ user_id: string }>(
      database.url,
      "SELECT user_id FROM convoke_conversations WHERE id = $1",
      [id]
    )
    expect(rows).toEqual([{ user_id: `jwt:${encodeURIComponent(ISSUER)}:ns-user` }])
  })
})

describe("the HTTP surface", () => {
  it("adds security headers to streams without changing them, and answers CORS preflights", async () => {
    const response = await chat(
      server,
      { message: "hi", stream: true },
      { headers: { ...bearer(CONFIGURED_KEY).headers, origin: "https://app.example" } }
    )
    expect(response.headers.get("x-content-type-options")).toBe("nosniff")
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example")
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
    const payloads = await readAll(response)
    expect(events(payloads)[0]!.type).toBe("metadata")
    expect(payloads.at(-1)).toBe("[DONE]")

    const preflight = await fetch(`${server.url}/api/v0.3/chat`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"
      }
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example")
    const refused = await fetch(`${server.url}/api/v0.3/chat`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" }
    })
    expect(refused.status).toBe(403)
    expect(refused.headers.get("access-control-allow-origin")).toBeNull()
  })

  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(server.port, "127.0.0.1")
      let received = ""
      socket.on("data", (chunk) => {
        received += chunk
      })
      socket.on("end", () => resolve(received))
      socket.on("error", (error) => (received === "" ? reject(error) : resolve(received)))
      socket.end(request)
    })

  it("answers oversized headers with 431 and malformed requests with 400, both with the common error body", async () => {
    const big = await raw(
      `POST /api/v0.3/chat HTTP/1.1\r\nHost: x\r\nX-Padding: ${"a".repeat(20_000)}\r\nContent-Length: 2\r\n\r\n{}`
    )
    expect(big).toMatch(/^HTTP\/1\.1 431 /)
    expect(JSON.parse(big.slice(big.indexOf("\r\n\r\n") + 4))).toEqual({
      error: { type: "request_header_fields_too_large", message: expect.any(String) }
    })
    const malformed = await raw("GARBAGE\r\n\r\n")
    expect(malformed).toMatch(/^HTTP\/1\.1 400 /)
    expect(JSON.parse(malformed.slice(malformed.indexOf("\r\n\r\n") + 4)).error.type).toBe("invalid_request")
    // The server is unharmed.
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
  })
})
