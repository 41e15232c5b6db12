/**
 * Which kind of client sent a request — `unity`, `web`, `mobile`, `node` or
 * `other` — for metrics such as the Unity adoption rate.
 *
 * Clients should say it with the `X-Convoke-Client` header (`unity`,
 * `unity/2.1.0`, `web`, `mobile`, `node` for server-side programs; the part
 * before a `/` counts, case does not). Convoke's own clients always send it:
 * `@convoke/client` says `web/<version>` in browsers and `node/<version>`
 * elsewhere, the Unity package `unity/<version>`.
 * Without the header the `User-Agent` decides: Unity's `UnityPlayer/…`, then
 * mobile platforms and HTTP stacks (`Android`, `iPhone`, `iPad`, `Mobile`,
 * `okhttp`, `CFNetwork`, `Dalvik`, `Dart`), then browsers (`Mozilla/…`);
 * anything else (curl, server-side SDKs, no header at all) is `other`.
 *
 * A Unity WebGL build runs in a browser and sends a browser User-Agent:
 * such builds must send `X-Convoke-Client: unity` to be counted as Unity.
 *
 * @since 0.1.0
 */
/** The kinds, in the order dashboards list them. */
export const kinds = ["unity", "web", "mobile", "node", "other"] as const

/** A client kind. */
export type ClientKind = (typeof kinds)[number]

/** The header clients use to declare their kind. */
export const HEADER = "x-convoke-client"

const UNITY = /\bUnity(Player|WebRequest)?\//i
const MOBILE = /\b(Android|iPhone|iPad|iPod|Mobile|okhttp|CFNetwork|Dalvik|Dart|Expo)\b/i
const BROWSER = /^Mozilla\//

const isKind = (value: string): value is ClientKind => (kinds as ReadonlyArray<string>).includes(value)

/** The kind a `User-Agent` string suggests. */
export const fromUserAgent = (userAgent: string | undefined): ClientKind => {
  if (userAgent === undefined || userAgent === "") return "other"
  if (UNITY.test(userAgent)) return "unity"
  if (MOBILE.test(userAgent)) return "mobile"
  if (BROWSER.test(userAgent)) return "web"
  return "other"
}

/** The kind of client behind a request (lower-case header names): the declared one, else the User-Agent's guess. */
export const detect = (headers: Readonly<Record<string, string | undefined>>): ClientKind => {
  const declared = headers[HEADER]?.split("/")[0]?.trim().toLowerCase()
  if (declared !== undefined && declared !== "") return isKind(declared) ? declared : "other"
  return fromUserAgent(headers["user-agent"])
}
