/**
 * The files under deploy/ name only metrics that exist: every metric in the
 * recording rules, alerts and Grafana dashboard is one `/metrics` exports (or
 * a histogram series of one) or one the rules record. Syntax is promtool's
 * job (`.ci/run`); names are checked here, where the exporter is at hand.
 */
import { readFileSync } from "node:fs"
import { ChatMetrics } from "@convoke/core"
import * as Prometheus from "@convoke/prometheus-text"
import { describe, expect, it } from "vitest"

const root = new URL("../../../", import.meta.url)
const rulesText = readFileSync(new URL("deploy/prometheus/convoke-rules.yml", root), "utf8")
const dashboard = JSON.parse(readFileSync(new URL("deploy/grafana/convoke.json", root), "utf8"))
const scrapeConfig = readFileSync(new URL("deploy/prometheus/prometheus.yml", root), "utf8")

/** The `expr:` values of a rules file, inline or folded (`expr: >`). */
const ruleExpressions = (text: string): Array<string> => {
  const lines = text.split("\n")
  const expressions: Array<string> = []
  lines.forEach((line, index) => {
    const match = /^(\s*)expr:\s*(.*)$/.exec(line)
    if (match === null) return
    if (match[2] !== ">" && match[2] !== ">-") {
      expressions.push(match[2]!)
      return
    }
    const indent = match[1]!.length
    const body: Array<string> = []
    for (const next of lines.slice(index + 1)) {
      if (next.trim() !== "" && next.length - next.trimStart().length <= indent) break
      body.push(next.trim())
    }
    expressions.push(body.join(" "))
  })
  return expressions
}

const PROMQL_WORDS = new Set([
  "sum",
  "max",
  "min",
  "avg",
  "rate",
  "increase",
  "histogram_quantile",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "vector",
  "scalar",
  "round",
  "clamp_min",
  "and",
  "or",
  "unless",
  "le"
])

/** The metric names an expression reads. */
const metricNames = (expression: string): Array<string> =>
  expression
    .replace(/"[^"]*"/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, "")
    .match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)
    ?.filter((word) => !PROMQL_WORDS.has(word)) ?? []

const exported = (() => {
  const metrics = ChatMetrics.make()
  metrics.recordAbandonment({ created: 1, abandoned: 0 })
  const families = Prometheus.parse(metrics.format()).families
  return new Set(
    families.flatMap((family) =>
      family.type === "HISTOGRAM"
        ? [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`]
        : [family.name]
    )
  )
})()
const recorded = new Set([...rulesText.matchAll(/- record:\s*(\S+)/g)].map((match) => match[1]!))
const known = (name: string) => exported.has(name) || recorded.has(name)

describe("deploy/", () => {
  it("the recording rules and alerts read only exported or recorded metrics", () => {
    const expressions = ruleExpressions(rulesText)
    expect(expressions.length).toBe(12)
    const names = expressions.flatMap(metricNames)
    expect(names).toContain("chat_requests_total")
    expect(names.filter((name) => !known(name))).toEqual([])
  })

  it("the release notes' three alerts are defined with their severities", () => {
    const alerts = [...rulesText.matchAll(/- alert:\s*(\S+)[\s\S]*?severity:\s*(\S+)/g)].map((match) => [
      match[1],
      match[2]
    ])
    expect(alerts).toEqual([
      ["ConvokeConversationCreationFailureRateHigh", "critical"],
      ["ConvokeStreamStartLatencyHigh", "warning"],
      ["ConvokeUnityRequestRateLow", "info"]
    ])
  })

  it("the Grafana dashboard reads only exported or recorded metrics", () => {
    const expressions: Array<string> = dashboard.panels.flatMap((panel: any) =>
      (panel.targets ?? []).map((target: any) => target.expr)
    )
    expect(expressions.length).toBeGreaterThan(15)
    expect(expressions.flatMap(metricNames).filter((name) => !known(name))).toEqual([])
    // Every exported metric appears on the dashboard.
    const shown = new Set(
      expressions.flatMap(metricNames).map((name) => name.replace(/_(bucket|sum|count)$/, ""))
    )
    const families = new Set([...exported].map((name) => name.replace(/_(bucket|sum|count)$/, "")))
    const viaRules = new Map([
      ["stream_outcomes_total", "stream_outcome_rate"],
      ["chat_requests_total", "chat_requests_total"]
    ])
    expect(
      [...families].filter((family) => !shown.has(family) && !shown.has(viaRules.get(family) ?? ""))
    ).toEqual([])
  })

  it("the example scrape config reads the rules beside it and scrapes /metrics on the admin port", () => {
    // Uncommented lines only: the token variant is a comment.
    const active = scrapeConfig
      .split("\n")
      .filter((line) => !line.trimStart().startsWith("#"))
      .join("\n")
    expect(active).toContain("rule_files: [convoke-rules.yml]")
    expect(active).toMatch(/metrics_path: \/metrics/)
    expect(active).toMatch(/targets: \["[^"]+:9464"/)
    // The variant with the admin token sends it as Prometheus sends a bearer token.
    expect(scrapeConfig).toMatch(/#\s+authorization:\n\s*#\s+type: Bearer/)
  })
})
