/**
 * A loopback stand-in for the AWS Lambda Node.js runtime and the HTTP front
 * door in front of it, so the conformance suite talks plain HTTP to a Lambda
 * handler.
 *
 * `install()` defines the `awslambda` global with the runtime's semantics:
 * `streamifyResponse` marks a handler as streaming; `HttpResponseStream.from`
 * sets the content type `application/vnd.awslambda.http-integration-response`
 * and, just before the first write, writes the JSON prelude and 8 NUL bytes;
 * `setContentType` after the first write is an error; the handler must be
 * async and must end the stream.
 *
 * `serve(handler)` plays the Function URL (payload 2.0) or API Gateway REST
 * (payload 1.0) front door: each HTTP request becomes one invocation with a
 * fresh response stream (the event carries the client's address as its
 * source IP); the front door parses the prelude, sends status,
 * headers and cookies, then relays every later write as it comes, waiting
 * for the client (back-pressure). When the client disconnects, the response
 * stream is destroyed with an error, as the runtime's is when its response
 * connection fails. Bodies are base64-encoded unless their type is textual,
 * as Function URLs do.
 *
 * @since 0.2.0
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Writable } from "node:stream"
import type { LambdaEvent } from "../index.ts"

const STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming")
const PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
const DELIMITER = 8

type Write = (chunk: string | Uint8Array) => void

/** The runtime's response stream: a Writable with a content type and a first-write hook. */
export class ResponseStream extends Writable {
  contentType = "application/octet-stream"
  _onBeforeFirstWrite: ((write: Write) => void) | undefined
  private written = false
  private readonly sink: (chunk: Buffer, done: (error?: Error | null) => void) => void
  constructor(sink: (chunk: Buffer, done: (error?: Error | null) => void) => void) {
    super()
    this.sink = sink
  }
  setContentType(contentType: string) {
    if (this.written) throw new Error("setContentType must be called before the first write")
    this.contentType = contentType
  }
  override write(chunk: any, encoding?: any, callback?: any): boolean {
    if (!this.written) {
      this.written = true
      this._onBeforeFirstWrite?.((first) => super.write(first))
    }
    return super.write(chunk, encoding, callback)
  }
  override end(chunk?: any, encoding?: any, callback?: any): this {
    if (chunk !== undefined && typeof chunk !== "function") this.write(chunk, encoding)
    return super.end(
      typeof chunk === "function" ? chunk : typeof encoding === "function" ? encoding : callback
    )
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void) {
    this.sink(chunk, done)
  }
}

/** Defines the `awslambda` global, as the Node.js runtime does. */
export const install = () => {
  ;(globalThis as any).awslambda = {
    streamifyResponse: (handler: any) => {
      handler[STREAMING] = "response"
      return handler
    },
    HttpResponseStream: {
      from: (stream: ResponseStream, prelude: unknown) => {
        stream.setContentType(PRELUDE_CONTENT_TYPE)
        const json = JSON.stringify(prelude)
        stream._onBeforeFirstWrite = (write) => {
          write(json)
          write(new Uint8Array(DELIMITER))
        }
        return stream
      }
    }
  }
}

/** Removes the global again. */
export const uninstall = () => {
  delete (globalThis as any).awslambda
}

type StreamingHandler = (event: any, stream: ResponseStream, context: unknown) => Promise<void>

const TEXT = /^(text\/|application\/([\w.+-]+\+)?json)/i

/** Builds the event the front door would send for an HTTP request. */
const toEvent = (request: IncomingMessage, body: Buffer, payload: "1.0" | "2.0"): LambdaEvent.Event => {
  // The target as the front door passes it: `//evil.example/x` is a path, not another host.
  const target = request.url ?? "/"
  const mark = target.indexOf("?")
  const rawPath = mark === -1 ? target : target.slice(0, mark)
  const rawQuery = mark === -1 ? "" : target.slice(mark + 1)
  const multi: Record<string, Array<string>> = {}
  for (let index = 0; index < request.rawHeaders.length; index += 2) {
    const name = request.rawHeaders[index]!.toLowerCase()
    multi[name] = [...(multi[name] ?? []), request.rawHeaders[index + 1]!]
  }
  const text = TEXT.test(request.headers["content-type"] ?? "")
  const encoded = body.byteLength === 0 ? {} : { body: body.toString(text ? "utf8" : "base64") }
  const isBase64Encoded = body.byteLength > 0 && !text
  if (payload === "2.0") {
    const { cookie, ...rest } = multi
    const headers = Object.fromEntries(Object.entries(rest).map(([name, values]) => [name, values.join(",")]))
    return {
      version: "2.0",
      rawPath,
      rawQueryString: rawQuery,
      headers,
      ...(cookie ? { cookies: cookie.flatMap((line) => line.split(/;\s*/)) } : {}),
      requestContext: {
        domainName: "harness.lambda-url.localhost",
        http: { method: request.method!, sourceIp: request.socket.remoteAddress }
      },
      ...encoded,
      isBase64Encoded
    }
  }
  return {
    httpMethod: request.method!,
    path: rawPath,
    headers: Object.fromEntries(Object.entries(multi).map(([name, values]) => [name, values.at(-1)!])),
    multiValueHeaders: multi,
    queryStringParameters: rawQuery === "" ? null : Object.fromEntries(new URLSearchParams(rawQuery)),
    multiValueQueryStringParameters: null,
    requestContext: {
      domainName: "harness.execute-api.localhost",
      identity: { sourceIp: request.socket.remoteAddress }
    },
    ...encoded,
    isBase64Encoded
  }
}

/** The front door's side of one invocation: parse the prelude, then relay the body. */
const relay = (response: ServerResponse, stream: () => ResponseStream) => {
  let head: Buffer | undefined = Buffer.alloc(0)
  const send = (chunk: Buffer, done: (error?: Error | null) => void) => {
    if (chunk.byteLength === 0) return done()
    if (response.write(chunk)) return done()
    response.once("drain", () => done())
  }
  return (chunk: Buffer, done: (error?: Error | null) => void) => {
    if (head === undefined) return send(chunk, done)
    if (stream().contentType !== PRELUDE_CONTENT_TYPE) {
      head = undefined
      response.writeHead(200, { "content-type": stream().contentType })
      return send(chunk, done)
    }
    head = Buffer.concat([head, chunk])
    const end = head.indexOf(Buffer.alloc(DELIMITER))
    if (end === -1) return done()
    const prelude = JSON.parse(head.subarray(0, end).toString("utf8"))
    const rest = head.subarray(end + DELIMITER)
    head = undefined
    response.writeHead(prelude.statusCode ?? 200, {
      ...prelude.headers,
      ...(prelude.cookies?.length ? { "set-cookie": prelude.cookies } : {})
    })
    // Headers go out at once, as the front door does when the prelude arrives.
    response.flushHeaders()
    send(rest, done)
  }
}

/** A handler served on loopback, and what the harness saw going wrong. */
export interface Served {
  readonly url: string
  /** Contract violations by the handler (e.g. resolving without ending the stream). */
  readonly violations: Array<string>
  readonly invocations: () => number
  readonly close: () => Promise<void>
}

/** Serves a streaming handler over HTTP on 127.0.0.1, one invocation per request. */
export const serve = async (handler: StreamingHandler, payload: "1.0" | "2.0" = "2.0"): Promise<Served> => {
  if ((handler as any)[STREAMING] !== "response") throw new Error("not a streamifyResponse handler")
  const violations: Array<string> = []
  let invocations = 0
  const server = createServer(async (request, response) => {
    const chunks: Array<Buffer> = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    invocations++
    let stream!: ResponseStream
    stream = new ResponseStream(relay(response, () => stream))
    stream.on("error", () => {})
    stream.on("finish", () => response.end())
    response.on("close", () => {
      if (!response.writableFinished) stream.destroy(new Error("The client closed the connection"))
    })
    try {
      const result = handler(toEvent(request, Buffer.concat(chunks), payload), stream, {})
      if (!(result instanceof Promise)) violations.push("the handler is not async")
      await result
      if (!stream.writableEnded && !stream.destroyed) {
        violations.push("the handler resolved without ending the response stream")
        response.destroy()
      }
    } catch (error) {
      violations.push(`the handler threw: ${String(error)}`)
      response.destroy()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    violations,
    invocations: () => invocations,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}
