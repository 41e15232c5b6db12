/**
 * Which Claude model a request gets: the allow-list that maps the `model` a
 * client sends to a provider model.
 *
 * `claude-sonnet-4-5` (the model the v0.3 examples name) reaches end of life on
 * 2026-11-30 — the SDK's own deprecation table says so and warns on every
 * request that names it. It stays accepted as a request alias so existing
 * clients keep working, but it is served by a current model from the SDK's
 * model list. The mapping is configuration: pass `models` and `model` to
 * `AnthropicLanguageModel.layer` to change it.
 *
 * @since 0.1.0
 */

import { ChatError } from "@convoke/core"
import * as Effect from "effect/Effect"

/**
 * The provider model used when a request names none, and the target of the
 * default aliases: the current Sonnet in the SDK's model list.
 */
export const defaultModel = "claude-sonnet-5-5"

/**
 * Provider models the SDK's deprecation table lists, with their end of life.
 * A mapping that targets one of them still works until that date; the SDK
 * logs a warning on every such request.
 */
export const deprecated: Readonly<Record<string, string>> = {
  "claude-sonnet-4-5": "2026-11-30",
  "claude-sonnet-4-5-20250929": "2026-11-30",
  "claude-opus-4-5": "2027-01-22",
  "claude-opus-4-5-20251101": "2027-01-22",
  "claude-mythos-preview": "2026-06-30"
}

/**
 * The aliases accepted out of the box: the retiring `claude-sonnet-4-5` names
 * (served by the default model) and the default model's own name.
 */
export const defaultAliases: Readonly<Record<string, string>> = {
  "claude-sonnet-4-5": defaultModel,
  "claude-sonnet-4-5-20250929": defaultModel
}

/** A resolved allow-list: request alias → provider model, and the model for requests that name none. */
export interface ModelMap {
  readonly defaultModel: string
  readonly aliases: Readonly<Record<string, string>>
}

/**
 * Builds the allow-list. `model` replaces the default provider model (and so
 * the target of the default aliases); `models` adds or overrides aliases.
 * Every target is also accepted under its own name.
 */
export const make = (
  options: {
    readonly model?: string | undefined
    readonly models?: Readonly<Record<string, string>> | undefined
  } = {}
): ModelMap => {
  const target = options.model ?? defaultModel
  const aliases: Record<string, string> = {}
  for (const alias of Object.keys(defaultAliases)) aliases[alias] = target
  Object.assign(aliases, options.models ?? {})
  for (const provider of [target, ...Object.values(aliases)]) aliases[provider] ??= provider
  return { defaultModel: target, aliases }
}

/**
 * The provider model for a request's `model`: the default when absent or empty, the
 * mapped model for a known alias, `InvalidRequest` (a 400 before the stream
 * starts) for anything else.
 */
export const resolve = (
  map: ModelMap,
  requested: string | undefined
): Effect.Effect<string, ChatError.InvalidRequest> => {
  // An empty name means "no preference", as an empty conversation id means "new".
  if (requested === undefined || requested === "") return Effect.succeed(map.defaultModel)
  const provider = Object.hasOwn(map.aliases, requested) ? map.aliases[requested] : undefined
  return provider === undefined
    ? Effect.fail(
        new ChatError.InvalidRequest({
          message: `Unknown model "${requested.slice(0, 100)}"; accepted: ${Object.keys(map.aliases).sort().join(", ")}`
        })
      )
    : Effect.succeed(provider)
}

/**
 * Parses `alias=model` pairs separated by commas (the form used in
 * environment variables) into an alias record; throws on a malformed entry.
 */
export const parseAliases = (text: string): Record<string, string> => {
  const aliases: Record<string, string> = {}
  for (const entry of text.split(",")) {
    if (entry.trim() === "") continue
    const separator = entry.indexOf("=")
    const alias = entry.slice(0, separator).trim()
    const provider = entry.slice(separator + 1).trim()
    if (separator <= 0 || alias === "" || provider === "") {
      throw new Error(`model aliases must look like alias=provider-model, got "${entry.trim()}"`)
    }
    aliases[alias] = provider
  }
  return aliases
}
