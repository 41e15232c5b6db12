/**
 * Structured logs of the `convoke` CLI (CONVOKE_LOG_FORMAT=json): one JSON
 * object per line, with the ids and durations of each request and turn, and
 * never the content of a message.
 */
import { spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, it } from "vitest"
import { chat, events, readAll, watchOutput } from "./helpers.ts"

const bin = join(import.meta.dirname, "..", "src", "bin.ts")

it("writes one JSON object per line with request id, conversation id, user id, outcome and durations", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-logs-"))
  const child = spawn(process.execPath, [bin], {
    env: {
      ...process.env,
      PORT: "0",
      CONVOKE_DATA_DIR: dataDir,
      CONVOKE_LOG_FORMAT: "json",
      CONVOKE_ECHO_DELAY_MS: "0"
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output = watchOutput(child)
  try {
    const [, url] = await output.waitFor("stdout", /listening\s+(http:\/\/\S+)/)
    expect(output.stdout()).toMatch(/logs\s+json/)
    const response = await chat(
      { url: url! },
      { message: "my confidential words", stream: true },
      { headers: { "x-request-id": "log-test-1", "user-agent": "UnityPlayer/6000.0.1f1" } }
    )
    const [metadata] = events(await readAll(response))
    child.kill("SIGTERM")
    expect(await output.closed).toBe(0)

    const lines = output
      .stdout()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line))
    const byMessage = (message: string) => lines.filter((line) => line.message === message)
    expect(byMessage("Request handled")[0].annotations).toMatchObject({
      requestId: "log-test-1",
      method: "POST",
      path: "/api/v0.3/chat",
      client: "unity",
      status: 200
    })
    expect(byMessage("Conversation resolved")[0].annotations).toMatchObject({
      requestId: "log-test-1",
      userId: "anonymous",
      conversationId: metadata!.conversation_id,
      source: "absent"
    })
    const [ended] = byMessage("Chat turn ended")
    expect(ended.level).toBe("INFO")
    expect(ended.annotations).toMatchObject({
      requestId: "log-test-1",
      userId: "anonymous",
      conversationId: metadata!.conversation_id,
      outcome: "complete"
    })
    expect(typeof ended.annotations.durationMillis).toBe("number")
    expect(`${output.stdout()}${output.stderr()}`).not.toContain("confidential")
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL")
    await rm(dataDir, { recursive: true, force: true })
  }
})
