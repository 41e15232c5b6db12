/**
 * Conversation history as the Messages API accepts it.
 *
 * The API wants turns that alternate, starting (and, for a reply, ending) with
 * the user. Core already sends history that way, oldest first, with failed
 * turns dropped; this module still makes any input acceptable — empty turns
 * are dropped, consecutive turns of one role are merged, leading assistant and
 * trailing assistant turns are dropped — and keeps long conversations inside
 * a budget by dropping the oldest exchanges whole, so the request never grows
 * past what the model can take.
 *
 * @since 0.1.0
 */
import type { LanguageModel } from "@convoke/core"

/** How much history a request may carry. */
export interface Budget {
  /** Most turns sent, the new user message included (default 100). */
  readonly maxMessages: number
  /**
   * Most characters of content sent, the new user message included (default
   * 400,000 — roughly 100,000 tokens of English). The newest user message is
   * always sent, even alone over budget.
   */
  readonly maxCharacters: number
}

/** The default budget. */
export const defaultBudget: Budget = { maxMessages: 100, maxCharacters: 400_000 }

/** One Messages API turn (text only). */
export interface Turn {
  readonly role: "user" | "assistant"
  readonly content: string
}

/**
 * Normalises and bounds a conversation for the Messages API. The result
 * alternates, starts and ends with a user turn, and fits the budget; it is
 * empty only when the input has no user text at all.
 */
export const toTurns = (
  messages: ReadonlyArray<LanguageModel.ModelMessage>,
  budget: Budget = defaultBudget
): Array<Turn> => {
  const turns: Array<{ role: "user" | "assistant"; content: string }> = []
  for (const message of messages) {
    if (message.content.trim() === "") continue
    const last = turns.at(-1)
    if (last === undefined && message.role === "assistant") continue
    if (last !== undefined && last.role === message.role) {
      last.content = `${last.content}\n\n${message.content}`
    } else {
      turns.push({ role: message.role, content: message.content })
    }
  }
  while (turns.at(-1)?.role === "assistant") turns.pop()

  // Drop the oldest exchange (a user turn and its reply) until the rest fits;
  // dropping pairs keeps the first turn a user turn.
  const maxMessages = Math.max(1, budget.maxMessages)
  let characters = turns.reduce((sum, turn) => sum + turn.content.length, 0)
  let start = 0
  while (
    turns.length - start > 1 &&
    (turns.length - start > maxMessages || characters > budget.maxCharacters)
  ) {
    characters -= turns[start]!.content.length + turns[start + 1]!.content.length
    start += 2
  }
  return turns.slice(start)
}
