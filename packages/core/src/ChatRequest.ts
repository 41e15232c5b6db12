/**
 * The body of `POST /api/v0.3/chat`, and how it is read (with `RequestBody`'s rules).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Schema from "effect/Schema"
import type * as ChatConfig from "./ChatConfig.ts"
import {
  InvalidRequest,
  type RequestTimeout,
  type RequestTooLarge,
  type UnsupportedMediaType
} from "./ChatError.ts"
import * as RequestBody from "./RequestBody.ts"

/**
 * The chat request as sent by clients. Unknown fields are ignored — never
 * stored, never passed on — so clients of later versions keep working.
 */
export const ChatRequest = Schema.Struct({
  message: Schema.String.annotate({
    description: "The user's message: not empty, no NUL characters, within the size limits."
  }).check(
    Schema.isNonEmpty({ message: "must be a non-empty string" }),
    // PostgreSQL text cannot hold NUL; refusing it beats storing an altered message.
    Schema.makeFilter((message: string) => !message.includes("\u0000") || "must not contain NUL characters")
  ),
  model: Schema.optionalKey(
    Schema.String.annotate({ description: "The model asked for, mapped through the model's allow-list." })
  ),
  stream: Schema.optionalKey(
    Schema.Boolean.annotate({
      description:
        "`true`: the reply as a Server-Sent Events stream; else the whole reply as one JSON object."
    })
  ),
  conversation_id: Schema.optionalKey(
    Schema.NullOr(Schema.String).annotate({
      description:
        'The conversation to continue; omitted, `null`, `""` or `"new"` starts one. With `stream: true` an ' +
        "id that is not one of the caller's starts a new conversation; without it, a 404."
    })
  )
}).annotate({ description: "The body of a chat request; unknown fields are ignored." })
export type ChatRequest = typeof ChatRequest.Type

/** Limits a body is checked against besides its size. */
export interface Limits {
  /** Deepest accepted nesting of arrays and objects (the body object is depth 1). */
  readonly maxJsonDepth?: number | undefined
  /** Longest accepted `message`, in Unicode code points. */
  readonly maxMessageCharacters?: number | undefined
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

/** Decodes a chat request from the body's text, after the content type was checked. */
export const parse = (text: string, limits: Limits = {}): Effect.Effect<ChatRequest, InvalidRequest> => {
  const max = limits.maxMessageCharacters
  return RequestBody.decodeJson(
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

/** Reads and decodes the chat request of an HTTP request, with the settings' limits. */
export const read = (
  request: HttpServerRequest.HttpServerRequest,
  settings: Pick<ChatConfig.Settings, "maxBodyBytes" | "maxJsonDepth" | "maxMessageCharacters">
): Effect.Effect<ChatRequest, InvalidRequest | RequestTooLarge | RequestTimeout | UnsupportedMediaType> =>
  RequestBody.read(request, {
    maxBodyBytes: settings.maxBodyBytes,
    decode: (text) => parse(text, settings)
  })
