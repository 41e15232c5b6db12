/**
 * The body of `POST /api/v0.3/chat`, and how it is read from raw bytes.
 *
 * @since 0.1.0
 */
import { Effect, Schema, SchemaIssue } from "effect"
import { InvalidRequest, RequestTooLarge, UnsupportedMediaType } from "./ChatError.ts"

/** The chat request as sent by clients. Unknown fields are ignored. */
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

/**
 * Decodes a JSON object body with a schema; every failure is an
 * `InvalidRequest` whose message names the offending fields.
 */
export const parseWith =
  <A>(schema: Schema.Decoder<A>) =>
  (text: string): Effect.Effect<A, InvalidRequest> => {
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
export const parse: (text: string) => Effect.Effect<ChatRequest, InvalidRequest> = parseWith(ChatRequest)

/** Reads and decodes a request body with the size and content-type rules of the contract. */
export const read = (
  options: ReadOptions
): Effect.Effect<ChatRequest, InvalidRequest | RequestTooLarge | UnsupportedMediaType> =>
  readWith(parse)(options)

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
