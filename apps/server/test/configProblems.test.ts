/**
 * `ConfigProblems.unwrapAll` reads every member of a record of configs and
 * fails with all their problems, where `Config.unwrap` stops at the first.
 */
import { ChatConfig } from "@convoke/core"
import { Config, ConfigProvider, Effect, Result } from "effect"
import { describe, expect, it } from "vitest"
import * as ConfigProblems from "../src/ConfigProblems.ts"

const fields = {
  port: ChatConfig.wholeNumber("PORT", { min: 0, max: 65535 }),
  limits: {
    depth: ChatConfig.wholeNumber("DEPTH", { min: 1, max: 10 }),
    name: Config.String("NAME")
  }
}

const problemsOf = (config: Config.Config<unknown>, env: Record<string, string>) => {
  const read = Effect.runSync(Effect.result(config.parse(ConfigProvider.fromEnv({ env }))))
  return Result.isFailure(read) ? ConfigProblems.list(read.failure) : []
}

describe("ConfigProblems.unwrapAll", () => {
  it("reads nested records like Config.unwrap", () => {
    const read = Effect.runSync(
      ConfigProblems.unwrapAll(fields).parse(
        ConfigProvider.fromEnv({ env: { PORT: "80", DEPTH: "3", NAME: "n" } })
      )
    )
    expect(read).toEqual({ port: 80, limits: { depth: 3, name: "n" } })
  })

  it("reports the problem of every member, where Config.unwrap reports the first", () => {
    const env = { PORT: "http", DEPTH: "99" }
    expect(problemsOf(Config.unwrap(fields), env)).toHaveLength(1)
    expect(problemsOf(ConfigProblems.unwrapAll(fields), env)).toEqual([
      { variable: "PORT", message: 'must be a whole number from 0 to 65535, got "http"' },
      { variable: "DEPTH", message: 'must be a whole number from 1 to 10, got "99"' },
      { variable: "NAME", message: "must be set" }
    ])
  })

  it("reports a problem read twice once", () => {
    const depth = ChatConfig.wholeNumber("DEPTH", { min: 1, max: 10 })
    expect(problemsOf(ConfigProblems.unwrapAll({ a: depth, b: { c: depth } }), { DEPTH: "0" })).toEqual([
      { variable: "DEPTH", message: 'must be a whole number from 1 to 10, got "0"' }
    ])
  })
})
