/**
 * A loopback Lambda Runtime API (`/2018-06-01/runtime/...`), the HTTP API a
 * runtime client polls for invocations and posts responses to, so AWS's own
 * Node.js Runtime Interface Client (`aws-lambda-ric`) can drive a handler
 * here. Each `invoke(event)` queues one invocation; the client's
 * `GET …/invocation/next` takes it; its `POST …/response` is recorded as
 * buffered (one body) or streaming (`Lambda-Runtime-Function-Response-Mode:
 * streaming`, chunked, each chunk kept as it arrives, error trailers read at
 * the end). `disconnect()` cuts a streaming response's connection, as the
 * service's side does when it stops reading.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const PREFIX = "/2018-06-01/runtime"

/** What the client posted for one invocation. */
export type Outcome =
  | { readonly mode: "buffered"; readonly body: string }
  | {
      readonly mode: "streaming"
      readonly contentType: string | undefined
      readonly chunks: ReadonlyArray<Buffer>
      /** `Lambda-Runtime-Function-Error-Type`, when the stream ended with an error. */
      readonly errorType: string | undefined
      /** Whether the response connection closed before the client ended it. */
      readonly aborted: boolean
    }
  | { readonly mode: "error"; readonly errorType: string | undefined; readonly body: string }

/** One queued invocation. */
export interface Invocation {
  readonly requestId: string
  /** Settles once the client posted the response (or error), or the response connection closed. */
  readonly outcome: Promise<Outcome>
  /** Resolves with each chunk of a streaming response as it arrives; `undefined` once it ended. */
  readonly nextChunk: () => Promise<Buffer | undefined>
  /** Cuts the streaming response's connection. */
  readonly disconnect: () => void
}

export interface RuntimeApi {
  /** `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`. */
  readonly address: string
  readonly invoke: (event: unknown) => Invocation
  /** Resolves with the body of `POST …/init/error`. */
  readonly initError: Promise<string>
  /** Resolves each time the client asks for the next invocation (its count so far). */
  readonly polled: (count: number) => Promise<void>
  readonly close: () => Promise<void>
}

const text = async (request: IncomingMessage) => {
  const chunks: Array<Buffer> = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

interface Pending {
  readonly requestId: string
  readonly event: unknown
  readonly settle: (outcome: Outcome) => void
  readonly push: (chunk: Buffer | undefined) => void
  readonly cut: { current?: () => void }
}

export const start = async (): Promise<RuntimeApi> => {
  const queue: Array<Pending> = []
  const waiting: Array<(pending: Pending | undefined) => void> = []
  const byId = new Map<string, Pending>()
  let polls = 0
  const pollWaiters: Array<{ count: number; resolve: () => void }> = []
  let reportInitError!: (body: string) => void
  const initError = new Promise<string>((resolve) => {
    reportInitError = resolve
  })
  let sequence = 0

  const server = createServer(async (request, response) => {
    const url = request.url ?? ""
    if (request.method === "GET" && url === `${PREFIX}/invocation/next`) {
      polls++
      for (const waiter of pollWaiters.filter((candidate) => candidate.count <= polls)) {
        pollWaiters.splice(pollWaiters.indexOf(waiter), 1)
        waiter.resolve()
      }
      const pending =
        queue.shift() ??
        (await new Promise<Pending | undefined>((resolve) => {
          waiting.push(resolve)
          // A client that goes away while it waits takes no invocation.
          response.once("close", () => {
            const index = waiting.indexOf(resolve)
            if (index !== -1) waiting.splice(index, 1)
            resolve(undefined)
          })
        }))
      if (pending === undefined) return
      response.writeHead(200, {
        "content-type": "application/json",
        "lambda-runtime-aws-request-id": pending.requestId,
        "lambda-runtime-deadline-ms": String(Date.now() + 300_000),
        "lambda-runtime-invoked-function-arn": "arn:aws:lambda:eu-west-1:123456789012:function:convoke",
        "lambda-runtime-trace-id": "Root=1-00000000-000000000000000000000000;Sampled=0"
      })
      response.end(JSON.stringify(pending.event))
      return
    }
    if (request.method === "POST" && url === `${PREFIX}/init/error`) {
      reportInitError(await text(request))
      response.writeHead(202).end('{"status":"OK"}')
      return
    }
    const match = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(url)
    const pending = match === null ? undefined : byId.get(decodeURIComponent(match[1]!))
    if (request.method !== "POST" || match === null || pending === undefined) {
      response.writeHead(404).end()
      return
    }
    if (match[2] === "error") {
      const body = await text(request)
      pending.settle({
        mode: "error",
        errorType: request.headers["lambda-runtime-function-error-type"] as string | undefined,
        body
      })
      response.writeHead(202).end('{"status":"OK"}')
      return
    }
    if (request.headers["lambda-runtime-function-response-mode"] !== "streaming") {
      pending.settle({ mode: "buffered", body: await text(request) })
      response.writeHead(202).end('{"status":"OK"}')
      return
    }
    const chunks: Array<Buffer> = []
    let ended = false
    pending.cut.current = () => request.socket.destroy()
    request.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      pending.push(chunk)
    })
    request.on("end", () => {
      ended = true
      pending.push(undefined)
      const errorType = request.trailers["lambda-runtime-function-error-type"]
      pending.settle({
        mode: "streaming",
        contentType: request.headers["content-type"],
        chunks,
        errorType,
        aborted: false
      })
      response.writeHead(202).end('{"status":"OK"}')
    })
    request.on("close", () => {
      if (ended) return
      pending.push(undefined)
      pending.settle({
        mode: "streaming",
        contentType: request.headers["content-type"],
        chunks,
        errorType: undefined,
        aborted: true
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))

  const invoke = (event: unknown): Invocation => {
    const requestId = `00000000-0000-4000-8000-${String(++sequence).padStart(12, "0")}`
    let settle!: (outcome: Outcome) => void
    const outcome = new Promise<Outcome>((resolve) => {
      settle = resolve
    })
    const arrived: Array<Buffer | undefined> = []
    const readers: Array<(chunk: Buffer | undefined) => void> = []
    const push = (chunk: Buffer | undefined) => {
      const reader = readers.shift()
      if (reader) reader(chunk)
      else arrived.push(chunk)
    }
    const pending: Pending = { requestId, event, settle, push, cut: {} }
    byId.set(requestId, pending)
    const taker = waiting.shift()
    if (taker) taker(pending)
    else queue.push(pending)
    return {
      requestId,
      outcome,
      nextChunk: () =>
        arrived.length > 0
          ? Promise.resolve(arrived.shift())
          : new Promise((resolve) => {
              readers.push(resolve)
            }),
      disconnect: () => pending.cut.current?.()
    }
  }

  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    invoke,
    initError,
    polled: (count) =>
      polls >= count
        ? Promise.resolve()
        : new Promise((resolve) => {
            pollWaiters.push({ count, resolve })
          }),
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

/** Where `scripts/install-ric.sh` puts the Runtime Interface Client (under the workspace's ignored `node_modules`). */
export const DEFAULT_CLIENT_DIR = fileURLToPath(
  new URL("../../../node_modules/.cache/aws-lambda-ric/node_modules/aws-lambda-ric", import.meta.url)
)

/**
 * The installed `aws-lambda-ric` package (`CONVOKE_LAMBDA_RIC`, or where
 * `scripts/install-ric.sh` puts it) with its native part built, or
 * `undefined`.
 */
export const locateClient = (): string | undefined => {
  const dir = resolve(process.env.CONVOKE_LAMBDA_RIC ?? DEFAULT_CLIENT_DIR)
  return existsSync(join(dir, "index.mjs")) && existsSync(join(dir, "rapid-client.node")) ? dir : undefined
}

/** A runtime client process serving one handler. */
export interface Client {
  readonly process: ChildProcess
  /** Everything it wrote to stderr so far. */
  readonly stderr: () => string
  /** Resolves with the exit code (or signal) once it exits. */
  readonly exited: Promise<number | string>
  readonly stop: () => Promise<void>
}

/**
 * Starts AWS's Runtime Interface Client against `api`, loading `handler`
 * (`file.export`) from a task root that re-exports the modules given, as
 * Lambda's Node.js runtime loads a function's code: the client process is
 * what Lambda runs in the execution environment.
 */
export const runClient = (options: {
  readonly clientDir: string
  readonly api: RuntimeApi
  readonly handler: string
  /** Module name (without extension) → the absolute path of the module it re-exports. */
  readonly modules: Record<string, string>
  readonly env?: Record<string, string>
}): Client => {
  const root = mkdtempSync(join(tmpdir(), "convoke-lambda-task-"))
  for (const [name, path] of Object.entries(options.modules))
    writeFileSync(join(root, `${name}.mjs`), `export * from ${JSON.stringify(path)}\n`)
  const child = spawn(process.execPath, [join(options.clientDir, "index.mjs")], {
    env: {
      ...process.env,
      ...options.env,
      // The example names the published `@convoke/lambda`; here it is this package's source.
      NODE_OPTIONS: `--import ${fileURLToPath(new URL("./WorkspaceResolve.ts", import.meta.url))}`,
      AWS_LAMBDA_RUNTIME_API: options.api.address,
      _HANDLER: options.handler,
      LAMBDA_TASK_ROOT: root,
      AWS_LAMBDA_FUNCTION_NAME: "convoke",
      AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512",
      AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/convoke",
      AWS_LAMBDA_LOG_STREAM_NAME: "loopback"
    },
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8")
  })
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"))
  )
  return {
    process: child,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill()
      await exited
      rmSync(root, { recursive: true, force: true })
    }
  }
}
