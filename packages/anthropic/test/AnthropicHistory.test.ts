import { describe, expect, it } from "vitest"
import { AnthropicHistory } from "../src/index.ts"

const user = (content: string) => ({ role: "user" as const, content })
const assistant = (content: string) => ({ role: "assistant" as const, content })

describe("AnthropicHistory.toTurns", () => {
  it("keeps an alternating conversation as it is", () => {
    const messages = [user("a"), assistant("b"), user("c")]
    expect(AnthropicHistory.toTurns(messages)).toEqual(messages)
  })

  it("merges consecutive turns of one role and drops empty ones", () => {
    expect(
      AnthropicHistory.toTurns([
        user("a"),
        user("b"),
        assistant(""),
        assistant("c"),
        assistant("d"),
        user("e")
      ])
    ).toEqual([user("a\n\nb"), assistant("c\n\nd"), user("e")])
  })

  it("starts and ends with a user turn", () => {
    expect(AnthropicHistory.toTurns([assistant("greeting"), user("a"), assistant("b")])).toEqual([user("a")])
    expect(AnthropicHistory.toTurns([assistant("only")])).toEqual([])
  })

  it("drops the oldest exchanges whole to fit the message budget", () => {
    const messages = [user("1"), assistant("2"), user("3"), assistant("4"), user("5")]
    expect(AnthropicHistory.toTurns(messages, { maxMessages: 3, maxCharacters: 1000 })).toEqual([
      user("3"),
      assistant("4"),
      user("5")
    ])
    expect(AnthropicHistory.toTurns(messages, { maxMessages: 2, maxCharacters: 1000 })).toEqual([user("5")])
  })

  it("drops the oldest exchanges to fit the character budget, but always sends the new message", () => {
    const long = "x".repeat(100)
    const messages = [user(long), assistant(long), user("short"), assistant("ok"), user("new")]
    expect(AnthropicHistory.toTurns(messages, { maxMessages: 100, maxCharacters: 50 })).toEqual([
      user("short"),
      assistant("ok"),
      user("new")
    ])
    expect(AnthropicHistory.toTurns([user(long)], { maxMessages: 100, maxCharacters: 10 })).toEqual([
      user(long)
    ])
  })

  it("bounds a very long conversation", () => {
    const messages = Array.from({ length: 5001 }, (_, index) =>
      index % 2 === 0 ? user(`u${index}`) : assistant(`a${index}`)
    )
    const turns = AnthropicHistory.toTurns(messages)
    expect(turns.length).toBeLessThanOrEqual(AnthropicHistory.defaultBudget.maxMessages)
    expect(turns[0]!.role).toBe("user")
    expect(turns.at(-1)).toEqual(user("u5000"))
  })
})
