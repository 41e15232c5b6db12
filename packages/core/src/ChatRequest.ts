/**
 * The body of `POST /api/v0.3/chat`, and how it is read from raw bytes.
 *
 * @since 0.1.0
 */
import { Effect, Schema, SchemaIssue } from "effect"
import { InvalidRequest, RequestTooLarge, UnsupportedMediaType } from "./ChatError.ts"

/**
 * The chat request as sent by clients. Unknown fields are ignored — never
 * stored, never passed on — so clients of later versions keep working.
 */
export const ChatRequest = Schema.Struct({
  message: Schema.String.check(
    Schema.isNonEmpty({ message: "must be a non-empty string" }),
    // PostgreSQL text cannot hold NUL; refusing it beats storing an altered message.
    Schema.makeFilter((message: string) => !message.includes("\u0000") || "must not contain NUL characters")
  ),
  model: Schema.optionalKey(Schema.String),
  stream: Schema.optionalKey(Schema.Boolean),
  conversation_id: Schema.optionalKey(Schema.NullOr(Schema.String))
})
export type ChatRequest = typeof ChatRequest.Type

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

/** Limits a body is checked against besides its size. */
export interface Limits {
  /** Deepest accepted nesting of arrays and objects (the body object is depth 1). */
  readonly maxJsonDepth?: number | undefined
  /** Longest accepted `message`, in Unicode code points. */
  readonly maxMessageCharacters?: number | undefined
}

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

const codePoints = (text: string): number => {
  let count = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    // A high surrogate followed by a low one is a single character.
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(index + 1)
      if (next >= 0xdc00 && next <= 0xdfff) index++
    }
    count++
  }
  return count
}

/**
 * Decodes a JSON object body with a schema, within the nesting limit; every
 * failure is an `InvalidRequest` whose message names the offending fields.
 */
export const parseWith =
  <A>(schema: Schema.Decoder<A>, limits: Limits = {}) =>
  (text: string): Effect.Effect<A, InvalidRequest> => {
    if (limits.maxJsonDepth !== undefined && jsonDepth(text) > limits.maxJsonDepth) {
      return Effect.fail(
        new InvalidRequest({ message: `Request body is nested deeper than ${limits.maxJsonDepth} levels` })
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

/** Decodes a chat request from the body's text, after the content type was checked. */
export const parse = (text: string, limits: Limits = {}): Effect.Effect<ChatRequest, InvalidRequest> => {
  const max = limits.maxMessageCharacters
  return parseWith(
    ChatRequest,
    limits
  )(text).pipe(
    Effect.flatMap((request) =>
      max !== undefined && request.message.length > max && codePoints(request.message) > max
        ? Effect.fail(new InvalidRequest({ message: `message: must be at most ${max} characters` }))
        : Effect.succeed(request)
    )
  )
}

/** Reads and decodes a request body with the size and content-type rules of the contract. */
export const read = (
  options: ReadOptions & { readonly limits?: Limits | undefined }
): Effect.Effect<ChatRequest, InvalidRequest | RequestTooLarge | UnsupportedMediaType> =>
  readWith((text) => parse(text, options.limits))(options)

/** Where a JSON body comes from and how large it may be. */
export interface ReadOptions {
  readonly contentType: string | undefined
  readonly contentLength: string | undefined
  readonly maxBodyBytes: number
  readonly body: Effect.Effect<Uint8Array, RequestTooLarge | InvalidRequest>
}

/** Reads a JSON body with the contract's size and content-type rules, then decodes it with `decode`. */
export const readWith =
  <A>(decode: (text: string) => Effect.Effect<A, InvalidRequest>) =>
  (options: ReadOptions): Effect.Effect<A, InvalidRequest | RequestTooLarge | UnsupportedMediaType> => {
    if (!isAcceptedContentType(options.contentType)) {
      return Effect.fail(new UnsupportedMediaType({ contentType: options.contentType ?? "" }))
    }
    const declared = options.contentLength === undefined ? undefined : Number(options.contentLength)
    if (declared !== undefined && declared > options.maxBodyBytes) {
      return Effect.fail(new RequestTooLarge({ limitBytes: options.maxBodyBytes }))
    }
    return options.body.pipe(
      Effect.flatMap((bytes): Effect.Effect<A, InvalidRequest | RequestTooLarge> => {
        if (bytes.byteLength > options.maxBodyBytes) {
          return Effect.fail(new RequestTooLarge({ limitBytes: options.maxBodyBytes }))
        }
        let text: string
        try {
          text = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
        } catch {
          return Effect.fail(new InvalidRequest({ message: "Request body is not valid UTF-8" }))
        }
        return decode(text)
      })
    )
  }
