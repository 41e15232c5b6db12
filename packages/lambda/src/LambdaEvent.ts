/**
 * Lambda HTTP events as the core's requests, and responses as Lambda
 * results: payload format 2.0 (Function URLs, API Gateway HTTP APIs) and 1.0
 * (API Gateway REST APIs), with base64 bodies, multi-value headers and
 * cookies. Nothing here knows about chat.
 *
 * @since 0.1.0
 */
import type { OutgoingHttpHeaders } from "node:http"
import * as HttpBody from "effect/http/HttpBody"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import type * as HttpMethod from "effect/http/HttpMethod"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Option from "effect/Option"

type Headers = Readonly<Record<string, string | undefined>>
type MultiValue = Readonly<Record<string, ReadonlyArray<string> | undefined>>

/** A payload format 2.0 event (Function URL, API Gateway HTTP API). */
export interface EventV2 {
  readonly version: "2.0"
  readonly rawPath: string
  readonly rawQueryString?: string | undefined
  readonly headers?: Headers | undefined
  readonly cookies?: ReadonlyArray<string> | undefined
  readonly body?: string | null | undefined
  readonly isBase64Encoded?: boolean | undefined
  readonly requestContext: {
    readonly domainName?: string | undefined
    readonly http: { readonly method: string; readonly sourceIp?: string | undefined }
  }
}

/** A payload format 1.0 event (API Gateway REST API, including response streaming). */
export interface EventV1 {
  readonly version?: "1.0" | undefined
  readonly httpMethod: string
  readonly path: string
  readonly headers?: Headers | null | undefined
  readonly multiValueHeaders?: MultiValue | null | undefined
  readonly queryStringParameters?: Headers | null | undefined
  readonly multiValueQueryStringParameters?: MultiValue | null | undefined
  readonly body?: string | null | undefined
  readonly isBase64Encoded?: boolean | undefined
  readonly requestContext?:
    | {
        readonly domainName?: string | undefined
        readonly identity?: { readonly sourceIp?: string | undefined }
      }
    | undefined
}

/** Any HTTP event the adapter understands. */
export type Event = EventV1 | EventV2

/** The status, headers (`set-cookie` apart) and cookies of a response. */
export interface Head {
  readonly statusCode: number
  readonly headers: Record<string, string>
  readonly cookies: Array<string>
}

/** The body of a buffered result: text, or base64 for binary content. */
export interface Body {
  readonly body: string
  readonly isBase64Encoded: boolean
}

/** A buffered result for payload format 2.0. */
export interface ResultV2 extends Head, Body {}

/** A buffered result for payload format 1.0. */
export interface ResultV1 extends Omit<Head, "cookies">, Body {
  readonly multiValueHeaders: Record<string, Array<string>>
}

/** Whether an event uses payload format 2.0. */
export const isV2 = (event: Event): event is EventV2 => "rawPath" in event && event.version === "2.0"

const stripBase = (path: string, basePath: string | undefined): string => {
  if (basePath === undefined || basePath === "" || basePath === "/") return path
  const base = basePath.endsWith("/") ? basePath.slice(0, -1) : basePath
  return path === base ? "/" : path.startsWith(`${base}/`) ? path.slice(base.length) : path
}

/** A record of single or multiple values as name–value pairs, in order. */
const pairs = (
  record: Readonly<Record<string, string | ReadonlyArray<string> | undefined>> | null | undefined
) =>
  Object.entries(record ?? {}).flatMap(([name, value]) =>
    [value ?? []].flat().map((item): [string, string] => [name, item])
  )

/**
 * The request an event describes, as the core serves it: its remote address
 * is the client's as the front door saw it. Throws when the event names no
 * valid URL (or is not an HTTP event at all). `basePath` is a prefix to remove
 * before routing (an HTTP API stage, a custom domain's base path).
 */
export const toServerRequest = (
  event: Event,
  options: { readonly basePath?: string | undefined } = {}
): HttpServerRequest.HttpServerRequest => {
  const v2 = isV2(event)
  const method = v2 ? event.requestContext.http.method : event.httpMethod
  const given = pairs(v2 ? event.headers : (event.multiValueHeaders ?? event.headers))
  // Format 2.0 moves cookies out of the headers into their own array.
  if (v2 && event.cookies?.length) given.push(["cookie", event.cookies.join("; ")])
  const headers: Record<string, string> = {}
  for (const [name, value] of given) {
    const lower = name.toLowerCase()
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`
  }
  // The body is complete in the event: a declared length or encoding no longer applies.
  delete headers["content-length"]
  delete headers["transfer-encoding"]
  const params = v2 ? [] : pairs(event.multiValueQueryStringParameters ?? event.queryStringParameters)
  const query = v2 ? (event.rawQueryString ?? "") : new URLSearchParams(params).toString()
  const path = stripBase(v2 ? event.rawPath : event.path, options.basePath)
  const host = headers.host ?? event.requestContext?.domainName ?? "lambda.invalid"
  // A host name and port only: a `/`, `?`, `#`, `@` or `\` would move the path into the authority.
  if (/[/?#@\\\s]/.test(host)) throw new TypeError(`Invalid Host header: ${JSON.stringify(host)}`)
  // The path is appended to the origin, never resolved against it: `//evil.example/x` (or
  // `/\evil.example/x`) stays a path on this host instead of naming another one.
  const url = new URL(
    `https://${host}${path.startsWith("/") ? "" : "/"}${path}${query === "" ? "" : `?${query}`}`
  )
  let client = HttpClientRequest.make(method as HttpMethod.HttpMethod)(url.href)
  if (event.body != null && method !== "GET" && method !== "HEAD") {
    const bytes = Buffer.from(event.body, event.isBase64Encoded === true ? "base64" : "utf8")
    client = HttpClientRequest.setBody(client, HttpBody.uint8Array(bytes, headers["content-type"]))
  }
  // Set after the body, whose content type would otherwise replace the client's (or stand in for none).
  client = HttpClientRequest.setHeaders(client, headers)
  if (headers["content-type"] === undefined) client = HttpClientRequest.removeHeader(client, "content-type")
  const request = HttpServerRequest.fromClientRequest(client)
  const sourceIp = v2 ? event.requestContext.http.sourceIp : event.requestContext?.identity?.sourceIp
  return sourceIp === undefined || sourceIp === ""
    ? request
    : request.modify({ remoteAddress: Option.some(sourceIp) })
}

/** The head of a response with Node-style headers: `set-cookie` lines become `cookies`. */
export const headOf = (status: number, headers: OutgoingHttpHeaders): Head => {
  const { "set-cookie": cookies, ...rest } = headers
  const flat: Record<string, string> = {}
  for (const [name, value] of Object.entries(rest))
    if (value !== undefined) flat[name] = [value].flat().join(", ")
  return { statusCode: status, headers: flat, cookies: cookies === undefined ? [] : [cookies].flat() }
}

const TEXT = /^(text\/|application\/([\w.+-]+\+)?(json|xml|javascript)|application\/x-www-form-urlencoded)/i

/** A whole response as a buffered result of the event's payload format. */
export const toResult = (event: Event, head: Head, bytes: Uint8Array): ResultV1 | ResultV2 => {
  const { statusCode, headers, cookies } = head
  const text = bytes.byteLength === 0 || TEXT.test(headers["content-type"] ?? "")
  const body = Buffer.from(bytes).toString(text ? "utf8" : "base64")
  const encoded = { body, isBase64Encoded: !text }
  if (isV2(event)) return { statusCode, headers, cookies, ...encoded }
  return {
    statusCode,
    headers,
    multiValueHeaders: cookies.length > 0 ? { "set-cookie": cookies } : {},
    ...encoded
  }
}
