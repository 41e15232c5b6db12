/**
 * The documented examples run as documented: `examples/two-instances/run.mjs`
 * starts two reference servers on one PostgreSQL database and one Redis,
 * resumes on the second a reply whose connection to the first dropped, and
 * stops from the second a turn the first runs.
 */
import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { requireService } from "@convoke/core/testing"
import { makeTestDatabase, type TestDatabase } from "@convoke/store-pg/testing"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { isRedisReachable } from "./helpers.ts"

const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"
// Skipped on a machine without Redis; under CI its absence fails the run.
const redisReachable = requireService(
  it,
  `Redis at ${new URL(REDIS_URL).host}`,
  await isRedisReachable(REDIS_URL)
)
const example = fileURLToPath(new URL("../../../examples/two-instances/run.mjs", import.meta.url))

let database: TestDatabase
const run = randomUUID()

beforeAll(async () => {
  if (redisReachable) database = await makeTestDatabase()
})
afterAll(async () => {
  await database?.drop()
})

describe.skipIf(!redisReachable)("examples/two-instances", () => {
  it("resumes on one instance a reply whose connection to the other dropped, and stops across instances", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [example], {
      // Keys of their own, so no other test's instances claim their turns or drain their writes.
      env: {
        ...process.env,
        DATABASE_URL: database.url,
        REDIS_URL,
        CONVOKE_TURN_LOG_PREFIX: `convoke:test:${run}:turns:`,
        CONVOKE_OUTBOX_PREFIX: `convoke:test:${run}:outbox:`
      },
      timeout: 60_000
    })
    expect(stdout).toMatch(/B ← GET …\/stream, Last-Event-ID: [0-9a-f-]{36}:3 → 200/)
    expect(stdout).toContain('B → " everything about resumable streams" [DONE]')
    expect(stdout).toMatch(/B ← POST …\/stop → 202 \{"turn_id":"[0-9a-f-]{36}"\}/)
    expect(stdout).toContain('A → {"type":"error","error":{"type":"cancelled"')
    expect(stdout).toContain("stored: user/complete, assistant/complete, user/complete, assistant/cancelled")
  })
})
