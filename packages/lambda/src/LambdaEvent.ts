/**
 * Lambda HTTP events to web `Request`s and web `Response`s to Lambda results:
 * payload format 2.0 (Function URLs, API Gateway HTTP APIs) and 1.0
 * (API Gateway REST APIs, HTTP APIs configured for 1.0), with base64 bodies,
 * multi-value headers and cookies. Nothing here knows about chat: it is the
 * translation every Lambda adapter of a web handler needs. `toServerRequest`
 * builds the core's own request instead, for serving without a web `Request`.
 *
 * @since 0.1.0
 */
import type { OutgoingHttpHeaders } from "node:http"
import { ClientAddress } from "@convoke/core"
import { Option } from "effect"
import { HttpBody, HttpClientRequest, type HttpMethod, HttpServerRequest } from "effect/http"

/** A payload format 2.0 event (Function URL, API Gateway HTTP API). */
export interface EventV2 {
  readonly version: "2.0"
  readonly rawPath: string
  readonly rawQueryString?: string | undefined
  readonly headers?: Readonly<Record<string, string | undefined>> | undefined
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
  readonly headers?: Readonly<Record<string, string | undefined>> | null | undefined
  readonly multiValueHeaders?: Readonly<Record<string, ReadonlyArray<string> | undefined>> | null | undefined
  readonly queryStringParameters?: Readonly<Record<string, string | undefined>> | null | undefined
  readonly multiValueQueryStringParameters?:
    | Readonly<Record<string, ReadonlyArray<string> | undefined>>
    | null
    | undefined
  readonly body?: string | null | undefined
  readonly isBase64Encoded?: boolean | undefined
  readonly requestContext?:
    | {
        readonly domainName?: string | undefined
        readonly identity?: { readonly sourceIp?: string | undefined } | undefined
      }
    | undefined
}

/** Any HTTP event the adapter understands. */
export type Event = EventV1 | EventV2

/** A buffered result for payload format 2.0. */
export interface ResultV2 {
  readonly statusCode: number
  readonly headers: Record<string, string>
  readonly cookies: Array<string>
  readonly body: string
  readonly isBase64Encoded: boolean
}

/** A buffered result for payload format 1.0. */
export interface ResultV1 {
  readonly statusCode: number
  readonly headers: Record<string, string>
  readonly multiValueHeaders: Record<string, Array<string>>
  readonly body: string
  readonly isBase64Encoded: boolean
}

/** Options of `toRequest`. */
export interface RequestOptions {
  /** Aborting it interrupts the handler (and the model). */
  readonly signal?: AbortSignal | undefined
  /**
   * A path prefix to remove before routing, e.g. an HTTP API stage (`/prod`)
   * or a custom domain's base path (`/chat`).
   */
  readonly basePath?: string | undefined
}

/** Whether an event uses payload format 2.0. */
export const isV2 = (event: Event): event is EventV2 => "rawPath" in event && event.version === "2.0"

const bodyOf = (event: Event, method: string): Uint8Array<ArrayBuffer> | string | undefined => {
  if (method === "GET" || method === "HEAD" || event.body === undefined || event.body === null)
    return undefined
  return event.isBase64Encoded === true ? new Uint8Array(Buffer.from(event.body, "base64")) : event.body
}

const stripBase = (path: string, basePath: string | undefined): string => {
  if (basePath === undefined || basePath === "" || basePath === "/") return path
  const base = basePath.endsWith("/") ? basePath.slice(0, -1) : basePath
  return path === base ? "/" : path.startsWith(`${base}/`) ? path.slice(base.length) : path
}

/** What an event says about its request, as both request builders take it. */
interface Parts {
  readonly method: string
  readonly url: URL
  /** In order; a name may repeat. Without `content-length`: the body is complete in the event. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
  readonly body: Uint8Array<ArrayBuffer> | string | undefined
  /** The client's address, as the front door saw it. */
  readonly sourceIp: string | undefined
}

const partsOf = (event: Event, basePath: string | undefined): Parts => {
  const headers: Array<readonly [string, string]> = []
  let method: string
  let path: string
  let query: string
  let sourceIp: string | undefined
  if (isV2(event)) {
    method = event.requestContext.http.method
    path = event.rawPath
    query = event.rawQueryString ?? ""
    sourceIp = event.requestContext.http.sourceIp
    for (const [name, value] of Object.entries(event.headers ?? {})) {
      if (value !== undefined) headers.push([name, value])
    }
    // Format 2.0 moves cookies out of the headers into their own array.
    if (event.cookies !== undefined && event.cookies.length > 0)
      headers.push(["cookie", event.cookies.join("; ")])
  } else {
    method = event.httpMethod
    path = event.path
    sourceIp = event.requestContext?.identity?.sourceIp
    const params = new URLSearchParams()
    const multi = event.multiValueQueryStringParameters
    for (const [name, values] of Object.entries(multi ?? {}))
      for (const value of values ?? []) params.append(name, value)
    if (multi === undefined || multi === null) {
      for (const [name, value] of Object.entries(event.queryStringParameters ?? {})) {
        if (value !== undefined) params.append(name, value)
      }
    }
    query = params.toString()
    const multiHeaders = event.multiValueHeaders
    for (const [name, values] of Object.entries(multiHeaders ?? {})) {
      for (const value of values ?? []) headers.push([name, value])
    }
    if (multiHeaders === undefined || multiHeaders === null) {
      for (const [name, value] of Object.entries(event.headers ?? {})) {
        if (value !== undefined) headers.push([name, value])
      }
    }
  }
  const host =
    headers.find(([name]) => name.toLowerCase() === "host")?.[1] ??
    event.requestContext?.domainName ??
    "lambda.invalid"
  const url = new URL(`${stripBase(path, basePath)}${query === "" ? "" : `?${query}`}`, `https://${host}`)
  return {
    method,
    url,
    headers: headers.filter(([name]) => {
      const lower = name.toLowerCase()
      return lower !== "content-length" && lower !== "transfer-encoding"
    }),
    body: bodyOf(event, method),
    sourceIp: sourceIp === "" ? undefined : sourceIp
  }
}

/** Builds the web `Request` an event describes, with the client's address (`ClientAddress`). */
export const toRequest = (event: Event, options: RequestOptions = {}): Request => {
  const parts = partsOf(event, options.basePath)
  const headers = new Headers()
  for (const [name, value] of parts.headers) headers.append(name, value)
  const request = new Request(parts.url, {
    method: parts.method,
    headers,
    ...(parts.body === undefined ? {} : { body: parts.body }),
    ...(options.signal === undefined ? {} : { signal: options.signal })
  })
  ClientAddress.set(request, parts.sourceIp)
  return request
}

/**
 * The request an event describes, as the core serves it natively
 * (`NodeHandler.serve`): no web `Request` is built. Its remote address is the
 * client's. Throws, as `toRequest` does, when the event names no valid URL.
 */
export const toServerRequest = (
  event: Event,
  options: Pick<RequestOptions, "basePath"> = {}
): HttpServerRequest.HttpServerRequest => {
  const parts = partsOf(event, options.basePath)
  const headers: Record<string, string> = {}
  for (const [name, value] of parts.headers) {
    const lower = name.toLowerCase()
    const existing = headers[lower]
    headers[lower] = existing === undefined ? value : `${existing}, ${value}`
  }
  let client = HttpClientRequest.make(parts.method as HttpMethod.HttpMethod)(parts.url.href)
  if (parts.body !== undefined) {
    const bytes = typeof parts.body === "string" ? Buffer.from(parts.body) : parts.body
    client = HttpClientRequest.setBody(client, HttpBody.uint8Array(bytes, headers["content-type"]))
  }
  // Set after the body, whose content type would otherwise replace the client's (or stand in for none).
  client = HttpClientRequest.setHeaders(client, headers)
  if (headers["content-type"] === undefined) client = HttpClientRequest.removeHeader(client, "content-type")
  const request = HttpServerRequest.fromClientRequest(client)
  return parts.sourceIp === undefined
    ? request
    : request.modify({ remoteAddress: Option.some(parts.sourceIp) })
}

/** The status, headers (set-cookie apart) and cookies of a response, for a streaming prelude. */
export const preludeOf = (response: Response) => {
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value
  })
  return { statusCode: response.status, headers, cookies: response.headers.getSetCookie() }
}

/**
 * The prelude for a status and Node-style headers, as the core's native
 * serving gives them: `set-cookie` lines become `cookies`.
 */
export const preludeOfHead = (status: number, headers: OutgoingHttpHeaders) => {
  const flat: Record<string, string> = {}
  let cookies: Array<string> = []
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    if (name.toLowerCase() === "set-cookie") cookies = Array.isArray(value) ? [...value] : [String(value)]
    else flat[name] = Array.isArray(value) ? value.join(", ") : String(value)
  }
  return { statusCode: status, headers: flat, cookies }
}

const TEXT = /^(text\/|application\/([\w.+-]+\+)?(json|xml|javascript)|application\/x-www-form-urlencoded)/i

/** Reads a whole response into a buffered result of the event's payload format. */
export const toResult = async (event: Event, response: Response): Promise<ResultV1 | ResultV2> => {
  const { statusCode, headers, cookies } = preludeOf(response)
  const bytes = new Uint8Array(await response.arrayBuffer())
  const text = bytes.byteLength === 0 || TEXT.test(headers["content-type"] ?? "")
  const body = text ? new TextDecoder().decode(bytes) : Buffer.from(bytes).toString("base64")
  return isV2(event)
    ? { statusCode, headers, cookies, body, isBase64Encoded: !text }
    : {
        statusCode,
        headers,
        multiValueHeaders: cookies.length > 0 ? { "set-cookie": cookies } : {},
        body,
        isBase64Encoded: !text
      }
}
