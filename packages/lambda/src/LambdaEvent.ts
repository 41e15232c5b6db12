/**
 * Lambda HTTP events to web `Request`s and web `Response`s to Lambda results:
 * payload format 2.0 (Function URLs, API Gateway HTTP APIs) and 1.0
 * (API Gateway REST APIs, HTTP APIs configured for 1.0), with base64 bodies,
 * multi-value headers and cookies. Nothing here knows about chat: it is the
 * translation every Lambda adapter of a web handler needs.
 *
 * @since 0.1.0
 */

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
    readonly http: { readonly method: string }
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
  readonly requestContext?: { readonly domainName?: string | undefined } | undefined
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

/** Builds the web `Request` an event describes. */
export const toRequest = (event: Event, options: RequestOptions = {}): Request => {
  const headers = new Headers()
  let method: string
  let path: string
  let query: string
  if (isV2(event)) {
    method = event.requestContext.http.method
    path = event.rawPath
    query = event.rawQueryString ?? ""
    for (const [name, value] of Object.entries(event.headers ?? {})) {
      if (value !== undefined) headers.set(name, value)
    }
    // Format 2.0 moves cookies out of the headers into their own array.
    if (event.cookies !== undefined && event.cookies.length > 0)
      headers.set("cookie", event.cookies.join("; "))
  } else {
    method = event.httpMethod
    path = event.path
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
      for (const value of values ?? []) headers.append(name, value)
    }
    if (multiHeaders === undefined || multiHeaders === null) {
      for (const [name, value] of Object.entries(event.headers ?? {})) {
        if (value !== undefined) headers.set(name, value)
      }
    }
  }
  const host = headers.get("host") ?? event.requestContext?.domainName ?? "lambda.invalid"
  const url = new URL(
    `${stripBase(path, options.basePath)}${query === "" ? "" : `?${query}`}`,
    `https://${host}`
  )
  const body = bodyOf(event, method)
  // The body is complete in the event: its length is known, whatever the client declared.
  headers.delete("content-length")
  headers.delete("transfer-encoding")
  return new Request(url, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
    ...(options.signal === undefined ? {} : { signal: options.signal })
  })
}

/** The status, headers (set-cookie apart) and cookies of a response, for a streaming prelude. */
export const preludeOf = (response: Response) => {
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value
  })
  return { statusCode: response.status, headers, cookies: response.headers.getSetCookie() }
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
