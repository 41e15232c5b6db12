/**
 * The `convoke` CLI as a user runs it: a real process, its banner, its
 * configuration errors, and a graceful SIGTERM with a stream open.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FakeAnthropic } from "@convoke/anthropic/testing"
import { makeTestDatabase } from "@convoke/store-pg/testing"
import { afterEach, describe, expect, it } from "vitest"
import { ADMIN_TOKEN, chat, frames, healthDetails, watchOutput } from "./helpers.ts"

const bin = join(import.meta.dirname, "..", "src", "bin.ts")
const children: Array<ChildProcess> = []
const dirs: Array<string> = []

// The developer's own Anthropic settings must not turn these runs into calls to Claude.
const inherited = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !name.startsWith("ANTHROPIC_"))
)

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...inherited, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  const output = watchOutput(child)
  return {
    child,
    exited: output.closed,
    output: () => ({ stdout: output.stdout(), stderr: output.stderr() }),
    waitFor: output.waitFor,
    /** The URL of the banner's `listening` line, as soon as it is printed. */
    listening: async () => (await output.waitFor("stdout", /listening\s+(http:\/\/\S+)/))[1]!
  }
}

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL")
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
})

describe("convoke CLI", () => {
  it("starts with no configuration, says what is active, and shuts down gracefully on SIGTERM", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "convoke-cli-"))
    dirs.push(dataDir)
    const server = run([], {
      CONVOKE_DATA_DIR: dataDir,
      CONVOKE_ECHO_DELAY_MS: "200",
      CONVOKE_ADMIN_TOKEN: ADMIN_TOKEN
    })
    const url = await server.listening()
    // The warning goes to stderr, a pipe of its own that may be read after stdout's.
    await server.waitFor("stderr", /WARNING: anonymous mode/)
    const { stdout } = server.output()
    expect(stdout).toContain("embedded PGlite")
    expect(stdout).toContain("echo")
    expect(stdout).toContain("ANONYMOUS")

    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: "ok" })
    const health = await healthDetails({ url })
    expect(health).toMatchObject({ status: "ok", model: "echo", store: "pglite", identity: "anonymous" })

    const response = await chat({ url }, { message: "a long message that takes a while", stream: true })
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let body = decoder.decode((await reader.read()).value)
    expect(frames(body)[0]).toContain('"type":"metadata"')

    server.child.kill("SIGTERM")
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      body += decoder.decode(value, { stream: true })
    }
    const payloads = frames(body)
    expect(payloads.at(-1)).toBe("[DONE]")
    expect(JSON.parse(payloads.at(-2)!)).toMatchObject({ type: "error", error: { type: "shutdown" } })
    expect(await server.exited).toBe(0)
  })

  it("talks to Claude when ANTHROPIC_API_KEY is set, and never prints the key", async () => {
    const fake = await FakeAnthropic.start()
    const database = await makeTestDatabase()
    try {
      const key = "sk-ant-cli-0123456789abcdefghij"
      const server = run([], {
        ANTHROPIC_API_KEY: key,
        ANTHROPIC_BASE_URL: fake.url,
        DATABASE_URL: database.url,
        CONVOKE_ADMIN_TOKEN: ADMIN_TOKEN
      })
      const url = await server.listening()
      expect(server.output().stdout).toMatch(/model\s+anthropic claude-sonnet-5-5 via http:\/\/127\.0\.0\.1/)
      expect((await healthDetails({ url })).model).toBe("anthropic")
      const reply = await (await chat({ url }, { message: "Hi" })).json()
      expect(reply.message.content).toBe("Hello there, how can I help?")
      server.child.kill("SIGTERM")
      expect(await server.exited).toBe(0)
      const { stdout, stderr } = server.output()
      expect(stdout + stderr).not.toContain(key)
    } finally {
      await fake.close()
      await database.drop()
    }
  })

  it("refuses anonymous access on a non-loopback address", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "convoke-cli-"))
    dirs.push(dataDir)
    const server = run(["--host", "0.0.0.0"], { CONVOKE_DATA_DIR: dataDir })
    expect(await server.exited).toBe(2)
    expect(server.output().stderr).toContain("Refusing anonymous access on 0.0.0.0")
  })

  it("warns when a secret is given as a flag, without repeating it", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "convoke-cli-"))
    dirs.push(dataDir)
    const server = run(["--api-keys", "cli-flag-key-0123456789-abcdefghijklmnopqrstuvwxyz:alice"], {
      CONVOKE_DATA_DIR: dataDir
    })
    await server.waitFor("stderr", /WARNING: --api-keys puts a secret in the process list/)
    await server.listening()
    const { stdout, stderr } = server.output()
    expect(stdout + stderr).not.toContain("cli-flag-key")
  })

  it("lists every configuration problem at once", async () => {
    const server = run(["--port", "70000"], {
      CONVOKE_MAX_BODY_BYTES: "lots",
      DATABASE_URL: "mysql://nope",
      CONVOKE_API_KEYS: "short:alice"
    })
    expect(await server.exited).toBe(2)
    const { stderr } = server.output()
    expect(stderr).toContain("PORT (--port) must be a whole number from 0 to 65535")
    expect(stderr).toContain("CONVOKE_MAX_BODY_BYTES (--max-body-bytes) must be a whole number")
    expect(stderr).toContain("DATABASE_URL (--database-url) must be a postgres://")
    expect(stderr).toContain('the key for user "alice" is 5 characters long')
  })

  it("rejects unknown flags and prints help on request", async () => {
    const unknown = run(["--bogus"])
    expect(await unknown.exited).toBe(2)
    expect(unknown.output().stderr).toContain("--bogus")
    const help = run(["--help"])
    expect(await help.exited).toBe(0)
    expect(help.output().stdout).toContain("CONVOKE_API_KEYS")
  })
})
