/**
 * What PostgreSQL text and uuid columns accept, shared by the store and the
 * audit log.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const LONE_SURROGATE = /\p{Cs}/gu

/** Whether the value is a UUID in its textual form. */
export const isUuid = (value: string): boolean => UUID.test(value)

/** Any surrogate, paired ones too: with NUL, the only text that needs a closer look. */
const SURROGATE = /[\uD800-\uDFFF]/

/** Text PostgreSQL accepts: NUL and unpaired surrogates become U+FFFD. */
export const storable = (text: string): string =>
  text.includes("\u0000") || SURROGATE.test(text)
    ? text.replaceAll("\u0000", "\uFFFD").replace(LONE_SURROGATE, "\uFFFD")
    : text
