/**
 * The SAM example's handlers run by AWS's own Node.js Runtime Interface
 * Client (`aws-lambda-ric`, the code Lambda's Node.js runtime runs: it
 * defines the `awslambda` global, polls the Runtime API and posts buffered or
 * streamed responses), against a loopback Runtime API. Nothing of the
 * package's own harness is involved: this checks the adapter against the
 * real `streamifyResponse` and `HttpResponseStream`.
 *
 * The client builds a native part at install time, so it is not a workspace
 * dependency: `packages/lambda/scripts/install-ric.sh` installs it (cmake,
 * make, g++, python3 and about a minute), or `CONVOKE_LAMBDA_RIC` names an
 * installed copy. Without it this file is skipped, saying so.
 */
import { randomUUID } from "node:crypto"
import { StoreProbe } from "@convoke/conformance"
import { ChatHttp } from "@convoke/core"
import { deleteKeys, isRedisReachable, REDIS_URL, requireService } from "@convoke/core/testing"
import { NodeRedis } from "@effect/platform-node"
import { Effect } from "effect"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import type { LambdaEvent } from "../src/index.ts"
import * as RuntimeApi from "./RuntimeApi.ts"

const clientDir = RuntimeApi.locateClient()
const isRedisReachableNow = await isRedisReachable(REDIS_URL)
const SKIPPED = clientDir
  ? ""
  : " — skipped: aws-lambda-ric is not installed (run packages/lambda/scripts/install-ric.sh, or set CONVOKE_LAMBDA_RIC)"

const KEY = "example-key-0123456789-abcdefghijklmnopqrstuvwxyz"
const PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
const DELIMITER = Buffer.alloc(8)
const example = (name: string) => new URL(`../examples/sam/${name}.ts`, import.meta.url).pathname

/** A Function URL (payload 2.0) event for the chat endpoint. */
const chatEvent = (body: object): LambdaEvent.EventV2 => ({
  version: "2.0",
  rawPath: ChatHttp.CHAT_PATH,
  rawQueryString: "",
  headers: { "content-type": "application/json", host: "abc.lambda-url.eu-west-1.on.aws", "x-api-key": KEY },
  requestContext: { http: { method: "POST", sourceIp: "203.0.113.9" } },
  body: JSON.stringify(body),
  isBase64Encoded: false
})

/** Reads a streamed response up to the end of its prelude: the prelude, and the first chunk's bytes after it. */
const readPrelude = async (invocation: RuntimeApi.Invocation) => {
  let head = Buffer.alloc(0)
  for (;;) {
    const chunk = await invocation.nextChunk()
    if (chunk === undefined) throw new Error("the stream ended inside the prelude")
    head = Buffer.concat([head, chunk])
    const end = head.indexOf(DELIMITER)
    if (end !== -1)
      return {
        prelude: JSON.parse(head.subarray(0, end).toString("utf8")),
        rest: head.subarray(end + DELIMITER.length)
      }
  }
}

/** A whole streamed response: its prelude and its body. */
const readAll = async (invocation: RuntimeApi.Invocation) => {
  const { prelude, rest } = await readPrelude(invocation)
  let body = rest.toString("utf8")
  for (let chunk = await invocation.nextChunk(); chunk !== undefined; chunk = await invocation.nextChunk())
    body += chunk.toString("utf8")
  return { prelude, body }
}

/** A Function URL event for `POST …/conversations/:id/stop`. */
const stopEvent = (conversationId: string): LambdaEvent.EventV2 => ({
  ...chatEvent({}),
  rawPath: `/api/v0.3/conversations/${conversationId}/stop`,
  body: ""
})

/** The next chunk with bytes in it. */
const nextBody = async (invocation: RuntimeApi.Invocation, rest: Buffer) => {
  if (rest.byteLength > 0) return rest.toString("utf8")
  const chunk = await invocation.nextChunk()
  return chunk?.toString("utf8")
}

describe.skipIf(clientDir === undefined)(`the SAM example under aws-lambda-ric${SKIPPED}`, () => {
  let store: StoreProbe.TestStore
  let api: RuntimeApi.RuntimeApi
  const env = () => ({ DATABASE_URL: store.url, CONVOKE_API_KEYS: `${KEY}:alice` })
  const modules = { streaming: example("streaming"), buffered: example("buffered") }
  /** A runtime client of the SAM example's `handler`, polling `runtime` (the suite's Runtime API unless said). */
  const client = (
    handler: "streaming.handler" | "buffered.handler",
    options: { readonly runtime?: RuntimeApi.RuntimeApi; readonly env?: Record<string, string> } = {}
  ) =>
    RuntimeApi.runClient({
      clientDir: clientDir!,
      api: options.runtime ?? api,
      handler,
      modules,
      env: { ...env(), ...options.env }
    })

  beforeAll(async () => {
    store = await StoreProbe.postgres()
  })
  afterAll(async () => {
    await store?.drop()
  })
  // A Runtime API per test: each test starts its own client, as each execution environment has its own.
  beforeEach(async () => {
    api = await RuntimeApi.start()
  })
  afterEach(async () => {
    await api.close()
  })

  it("streams: the prelude, then the metadata event alone, then the reply, then the end", async () => {
    const running = client("streaming.handler")
    try {
      for (const [turn, message] of [
        [1, "Hello there"],
        [2, "again"]
      ] as const) {
        const invocation = api.invoke(chatEvent({ message, stream: true }))
        const { prelude, rest } = await readPrelude(invocation)
        expect(prelude.statusCode).toBe(200)
        expect(prelude.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
        // The first write after the prelude is the metadata event, and nothing else.
        const first = await nextBody(invocation, rest)
        expect(first).toMatch(/^data: \{"type":"metadata","conversation_id":"[^"]+"[^\n]*\}\n\n$/)
        const { conversation_id } = JSON.parse(first!.slice("data: ".length))
        let body = first!
        for (
          let chunk = await invocation.nextChunk();
          chunk !== undefined;
          chunk = await invocation.nextChunk()
        )
          body += chunk.toString("utf8")
        expect(body.endsWith("data: [DONE]\n\n")).toBe(true)
        const outcome = await invocation.outcome
        expect(outcome).toMatchObject({
          mode: "streaming",
          contentType: PRELUDE_CONTENT_TYPE,
          errorType: undefined,
          aborted: false
        })
        expect(await store.probe.transcript(conversation_id)).toEqual([
          ["user", "complete", message],
          ["assistant", "complete", `Echo #1: ${message}`]
        ])
        // The client asks for the next invocation once this one returned.
        await api.polled(turn + 1)
      }
      expect(running.process.exitCode).toBeNull()
    } finally {
      await running.stop()
    }
  })

  it("answers an error before the stream in the prelude, with the common body", async () => {
    const running = client("streaming.handler")
    try {
      const event = chatEvent({ message: "hi", stream: true })
      const invocation = api.invoke({ ...event, headers: { ...event.headers, "x-api-key": "wrong" } })
      const { prelude, rest } = await readPrelude(invocation)
      expect(prelude.statusCode).toBe(401)
      let body = rest.toString("utf8")
      for (
        let chunk = await invocation.nextChunk();
        chunk !== undefined;
        chunk = await invocation.nextChunk()
      )
        body += chunk.toString("utf8")
      expect(JSON.parse(body)).toMatchObject({ error: { type: "unauthenticated" } })
      expect(await invocation.outcome).toMatchObject({ mode: "streaming", aborted: false })
    } finally {
      await running.stop()
    }
  })

  it("answers buffered, for an HTTP API: a JSON reply, and a whole SSE stream metadata first", async () => {
    const running = client("buffered.handler")
    try {
      const json = await api.invoke(chatEvent({ message: "hello" })).outcome
      expect(json.mode).toBe("buffered")
      const result = JSON.parse((json as { body: string }).body) as LambdaEvent.ResultV2
      expect(result.statusCode).toBe(200)
      expect(JSON.parse(result.body).message.content).toBe("Echo #1: hello")
      const sse = await api.invoke(chatEvent({ message: "hello", stream: true })).outcome
      const streamed = JSON.parse((sse as { body: string }).body) as LambdaEvent.ResultV2
      expect(streamed.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
      expect(streamed.body.startsWith('data: {"type":"metadata","conversation_id":"')).toBe(true)
      expect(streamed.body.endsWith("data: [DONE]\n\n")).toBe(true)
    } finally {
      await running.stop()
    }
  })

  // What docs/lambda.md reports: when the Runtime API closes a streaming
  // response's connection mid-stream, aws-lambda-ric 4.0.2 rejects a promise
  // nobody handles ("socket hang up") and the process exits. The turn dies
  // with it: the user message is stored, no reply. If a later client handles
  // this, this test fails and the documentation must change with it.
  it("loses the process when the response connection is cut mid-stream", async () => {
    const running = client("streaming.handler")
    try {
      const invocation = api.invoke(chatEvent({ message: "Hello there", stream: true }))
      const { rest } = await readPrelude(invocation)
      const first = await nextBody(invocation, rest)
      const { conversation_id } = JSON.parse(first!.slice("data: ".length))
      // Cut once the first content event arrived.
      for (
        let chunk = await invocation.nextChunk();
        chunk !== undefined;
        chunk = await invocation.nextChunk()
      )
        if (chunk.toString("utf8").includes('"type":"content"')) break
      invocation.disconnect()
      expect(await invocation.outcome).toMatchObject({ mode: "streaming", aborted: true })
      expect(await running.exited).not.toBe(0)
      expect(running.stderr()).toContain("socket hang up")
      expect(await store.probe.transcript(conversation_id)).toEqual([["user", "complete", "Hello there"]])
    } finally {
      await running.stop()
    }
  })
  // Lambda runs one invocation at a time per container: a stop for a running
  // turn always reaches another container. Two client processes here, each
  // with its own Runtime API, as two containers of one function.
  describe("a stop sent to another container", () => {
    const redisUp = requireService(it, `Redis at ${new URL(REDIS_URL).host}`, isRedisReachableNow)
    // A reply of 150 words, one every 20 ms: the stop lands while the turn runs.
    const long = Array.from({ length: 150 }, (_, index) => `w${index}`).join(" ")

    const twoContainers = async (extra: Record<string, string>) => {
      const other = await RuntimeApi.start()
      const first = client("streaming.handler", { env: extra })
      const second = client("streaming.handler", { runtime: other, env: extra })
      await Promise.all([api.polled(1), other.polled(1)])
      // The turn runs in the first container; once it streams, the stop goes to the second.
      const turn = api.invoke(chatEvent({ message: long, stream: true }))
      const { rest } = await readPrelude(turn)
      const { conversation_id } = JSON.parse((await nextBody(turn, rest))!.slice("data: ".length))
      let body = ""
      for (let chunk = await turn.nextChunk(); chunk !== undefined; chunk = await turn.nextChunk()) {
        body += chunk.toString("utf8")
        if (body.includes('"type":"content"')) break
      }
      const stop = await readAll(other.invoke(stopEvent(conversation_id)))
      for (let chunk = await turn.nextChunk(); chunk !== undefined; chunk = await turn.nextChunk())
        body += chunk.toString("utf8")
      const transcript = await store.probe.transcript(conversation_id)
      await Promise.all([first.stop(), second.stop()])
      await other.close()
      return { stop, body, transcript }
    }

    it.skipIf(!redisUp)(
      "with REDIS_URL, reaches the turn: it stops and its partial reply is stored",
      async () => {
        const prefix = `convoke:test:lambda:${randomUUID()}:`
        try {
          const { stop, body, transcript } = await twoContainers({
            REDIS_URL,
            CONVOKE_TURN_LOG_PREFIX: `${prefix}turns:`,
            CONVOKE_OUTBOX_PREFIX: `${prefix}outbox:`,
            CONVOKE_REDIS_PREFIX: `${prefix}ratelimit:`
          })
          expect(stop.prelude.statusCode).toBe(202)
          expect(JSON.parse(stop.body)).toHaveProperty("turn_id")
          expect(body).toContain('"error":{"type":"cancelled"')
          expect(body.endsWith("data: [DONE]\n\n")).toBe(true)
          expect(transcript.at(-1)?.slice(0, 2)).toEqual(["assistant", "cancelled"])
        } finally {
          await Effect.runPromise(
            deleteKeys(prefix).pipe(Effect.provide(NodeRedis.layer({ url: REDIS_URL })))
          )
        }
      }
    )

    it("without Redis, finds no turn (204), and the turn runs to its end", async () => {
      const { stop, body, transcript } = await twoContainers({})
      expect(stop.prelude.statusCode).toBe(204)
      expect(body).not.toContain('"type":"error"')
      expect(body.endsWith("data: [DONE]\n\n")).toBe(true)
      expect(transcript.at(-1)).toEqual(["assistant", "complete", `Echo #1: ${long}`])
    })
  })
})
