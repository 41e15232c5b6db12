/**
 * Reading a JSON request body with the contract's rules, once, for every
 * route that takes one: the content type (JSON, or JSON sent as `text/plain`
 * or with none → else 415), the size limit (→ 413), UTF-8 and JSON syntax,
 * nesting depth and a schema (→ 400 naming the offending fields).
 *
 * @since 0.1.0
 */

import * as ByteSize from "effect/ByteSize"
import * as Effect from "effect/Effect"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { InvalidRequest, RequestTimeout, RequestTooLarge, UnsupportedMediaType } from "./ChatError.ts"
import { BodyTimedOut } from "./NodeBody.ts"

/**
 * Whether a content type carries a JSON body. `text/plain` is accepted because
 * a browser `fetch` with a string body and no explicit header sends it; a
 * missing content type is accepted for the same kind of client.
 */
export const isAcceptedContentType = (contentType: string | undefined): boolean => {
  if (contentType === undefined || contentType.trim() === "") return true
  const essence = contentType.split(";")[0]!.trim().toLowerCase()
  return (
    essence === "application/json" ||
    essence === "text/plain" ||
    /^application\/[\w.+-]+\+json$/.test(essence)
  )
}

/**
 * The body's bytes, at most `maxBodyBytes` of them. Readers that stream (a
 * Node request, a web `Request`) stop at the limit and refuse a declared
 * length past it without reading; a body already in memory (a Lambda event)
 * is measured here. A Node request's body that does not end within
 * `ChatConfig`'s `bodyTimeout` fails with `RequestTimeout`.
 */
export const bytes = (
  request: HttpServerRequest.HttpServerRequest,
  maxBodyBytes: number
): Effect.Effect<Uint8Array, RequestTooLarge | RequestTimeout | InvalidRequest> =>
  request.arrayBuffer.pipe(
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBodyBytes)),
    Effect.mapError((error) => {
      if (error.reason._tag !== "RequestParseError")
        return new InvalidRequest({ message: "Could not read the request body" })
      if (error.reason.reason === "BodyTooLarge") return new RequestTooLarge({ limitBytes: maxBodyBytes })
      const cause = error.reason.cause
      return cause instanceof BodyTimedOut
        ? new RequestTimeout({ timeoutMillis: cause.timeoutMillis })
        : new InvalidRequest({ message: "Could not read the request body" })
    }),
    Effect.flatMap((buffer) =>
      buffer.byteLength > maxBodyBytes
        ? Effect.fail(new RequestTooLarge({ limitBytes: maxBodyBytes }))
        : Effect.succeed(new Uint8Array(buffer))
    )
  )

/**
 * The nesting depth of a JSON text, counted without parsing it, so a body of
 * thousands of brackets costs one linear scan and no recursion.
 */
export const jsonDepth = (text: string): number => {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    if (inString) {
      if (code === 92)
        index++ // backslash: skip the escaped character
      else if (code === 34) inString = false
    } else if (code === 34) inString = true
    else if (code === 123 || code === 91) deepest = Math.max(deepest, ++depth)
    else if (code === 125 || code === 93) depth--
  }
  return deepest
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Turns a schema issue into one readable sentence naming the offending field. */
const describe = (issue: SchemaIssue.Issue): string => {
  const { issues } = formatter(issue)
  return issues
    .map(({ path, message }) => {
      const field = (path ?? [])
        .map((key) => (typeof key === "object" ? String(key.key) : String(key)))
        .join(".")
      return field === "" ? message : `${field}: ${message}`
    })
    .join("; ")
}

/**
 * Decodes a JSON object with a schema, within a nesting limit; every failure
 * is an `InvalidRequest` whose message names the offending fields.
 */
export const decodeJson =
  <A>(schema: Schema.Decoder<A>, options: { readonly maxJsonDepth?: number | undefined } = {}) =>
  (text: string): Effect.Effect<A, InvalidRequest> => {
    const maxDepth = options.maxJsonDepth
    if (maxDepth !== undefined && jsonDepth(text) > maxDepth) {
      return Effect.fail(
        new InvalidRequest({ message: `Request body is nested deeper than ${maxDepth} levels` })
      )
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return Effect.fail(new InvalidRequest({ message: "Request body is not valid JSON" }))
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      return Effect.fail(new InvalidRequest({ message: "Request body must be a JSON object" }))
    }
    return Schema.decodeUnknownEffect(schema)(json, { errors: "all" }).pipe(
      Effect.mapError((error) => new InvalidRequest({ message: describe(error.issue) }))
    )
  }

/**
 * Reads a request's JSON body with the contract's rules and decodes its text
 * with `decode`. The content type is checked before a byte is read.
 */
export const read = <A>(
  request: HttpServerRequest.HttpServerRequest,
  options: {
    readonly maxBodyBytes: number
    readonly decode: (text: string) => Effect.Effect<A, InvalidRequest>
  }
): Effect.Effect<A, InvalidRequest | RequestTooLarge | RequestTimeout | UnsupportedMediaType> => {
  const contentType = request.headers["content-type"]
  if (!isAcceptedContentType(contentType)) {
    return Effect.fail(new UnsupportedMediaType({ contentType: contentType ?? "" }))
  }
  return Effect.flatMap(bytes(request, options.maxBodyBytes), (body) => {
    let text: string
    try {
      text = utf8.decode(body)
    } catch {
      return Effect.fail(new InvalidRequest({ message: "Request body is not valid UTF-8" }))
    }
    return options.decode(text)
  })
}

const utf8 = new TextDecoder("utf-8", { fatal: true })
