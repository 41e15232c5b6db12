/**
 * The report: every scenario's table with its ratios, and each target stated
 * as met or not from the numbers it is given.
 */
import { describe, expect, it } from "vitest"
import * as Profile from "../src/Profile.ts"
import { markdown } from "../src/Report.ts"
import { END, replaceSection, START, sectionOf } from "../src/SoakSection.ts"
import type { MemoryRow, Profiled, Report, Row } from "../src/Suite.ts"

const row = (
  server: string,
  concurrency: number,
  p50: number,
  p99: number,
  perSecond: number,
  extra: Partial<Row> = {}
): Row => ({
  server,
  concurrency,
  requests: 100,
  p50,
  p95: p99,
  p99,
  p99AfterFirstWave: p99 / 2,
  max: p99,
  doneP50: p50 + 20,
  perSecond,
  errors: 0,
  temporary: 0,
  peakRss: 100 * 1024 * 1024,
  cpuPerRequest: 1,
  errorMessages: [],
  ...extra
})

const memory = (server: string, perStream: number): MemoryRow => ({
  server,
  streams: 1000,
  opened: 1000,
  idleRss: 50 * 1024 * 1024,
  openRss: 50 * 1024 * 1024 + perStream * 1000,
  perStream,
  errors: 0,
  temporary: 0,
  ttfeP50: 5,
  ttfeP99: 50,
  errorMessages: []
})

const report: Report = {
  tables: [
    {
      title: "PostgreSQL: Convoke vs the baseline",
      note: "",
      reference: "baseline",
      roundRatios: ["c=1: Convoke 1.10, 1.20"],
      rows: [
        row("Convoke", 1, 2.2, 4, 40),
        row("baseline", 1, 2, 4, 40),
        row("Convoke", 64, 40, 100, 300, { cpuPerRequest: 2, temporary: 3 }),
        row("baseline", 64, 20, 50, 900)
      ]
    },
    {
      title: "2000 streams opened at once",
      note: "",
      reference: "baseline",
      synDrops: { Convoke: 0, baseline: 12 },
      rows: [row("Convoke", 2000, 600, 1200, 100), row("baseline", 2000, 500, 1000, 100)]
    },
    {
      title: "Embedded PGlite (Convoke only)",
      note: "",
      rows: [
        row("Convoke (PGlite)", 16, 3, 9, 300, { peakRss: 280 * 1024 * 1024 }),
        row("Convoke (PGlite, --max-semi-space-size=8)", 16, 3, 9, 290, { peakRss: 250 * 1024 * 1024 })
      ]
    },
    {
      title: "Adapters",
      note: "",
      reference: "node",
      rows: [
        row("express", 1, 2.2, 5, 30),
        row("fastify", 1, 3, 5, 30),
        row("lambda", 1, 2.4, 5, 30),
        row("node", 1, 2, 5, 30)
      ]
    }
  ],
  memory: [memory("Convoke", 80 * 1024), memory("baseline", 40 * 1024)],
  many: { ...memory("Convoke", 100 * 1024), streams: 10_000, opened: 10_000 },
  insert: { p50: 0.3, p99: 1.5 },
  profiles: [],
  errors: 0
}

/** A profile whose busy time is the sum of its places' self time, with 200 ms idle. */
const profile = (self: Profile.Breakdown["self"]): Profile.Breakdown => ({
  totalMs: self.reduce((sum, [, ms]) => sum + ms, 0) + 200,
  idleMs: 200,
  self,
  inclusive: self
})

const profiled = (server: string, self: Profile.Breakdown["self"], requests: number): Profiled => ({
  server,
  file: `${server}.cpuprofile`,
  requests,
  temporary: 0,
  cpuSeconds: 1,
  profile: profile(self)
})

describe("the performance report", () => {
  const text = markdown(report, "npm run bench", 200)

  it("names the command and the machine", () => {
    expect(text).toContain("`npm run bench`")
    expect(text).toMatch(/cores \(`nproc`\)/)
    expect(text).toContain(`Node ${process.version}`)
  })

  it("gives each row its p99 with and without the first wave", () => {
    expect(text).toContain("| Convoke | 64 | 100 | 40.00 | 100.00 | 100.00 | 50.00 | 100.00 |")
  })

  it("gives each row its ratios to the reference", () => {
    expect(text).toContain("p50 1.10×, p99 1.00×, req/s 1.00×")
    expect(text).toContain("p50 2.00×, p99 2.00×, req/s 0.33×")
  })

  it("states each target as met or not", () => {
    expect(text).toContain("| TTFE p50 ≤ 1.25× at 1 | 1.10× | met |")
    expect(text).toContain("| TTFE p50 ≤ 1.25× at 64 | 2.00× | **not met** |")
    expect(text).toContain("| requests/s ≥ 0.8× at 64 | 0.33× | **not met** |")
    expect(text).toContain("| server CPU per request ≤ 1.25× at 1 | 1.00× | met |")
    expect(text).toContain("| server CPU per request ≤ 1.25× at 64 | 2.00× | **not met** |")
    expect(text).toContain("| no temporary id while the database is healthy, at 1 | 0 | met |")
    expect(text).toContain("| no temporary id while the database is healthy, at 64 | 3 | **not met** |")
    expect(text).toContain("| 2000 opened at once: TTFE p50 ≤ 1.25× | 1.20× | met |")
    expect(text).toContain("| 2000 opened at once: SYN drops ≤ the baseline's | 0 vs 12 | met |")
    expect(text).toContain("| memory per open stream ≤ 1.5× | 2.00× | **not met** |")
    expect(text).toContain("| idle RSS ≤ 1.5× | 50 MiB vs 50 MiB: 1.00× | met |")
    // The goal is the default's; the capped server is shown beside it as the trade-off.
    expect(text).toContain(
      "| PGlite: peak RSS ≤ 300 MiB at 16 | 280 MiB (250 MiB with `--max-semi-space-size=8`) | met |"
    )
    expect(text.match(/\| PGlite: peak RSS/g)).toHaveLength(1)
    // Before and after: the previous release's ratios beside this run's.
    expect(text).toContain("| server CPU per request at 64 | 2.07× | 2.00× |")
    expect(text).toContain(
      "| temporary ids while the database is healthy | yes: creations past 50 ms, then the outbox's cascade | 3 at 1, 64 and 256 |"
    )
    expect(text).toContain("| 2,000 opened at once: TTFE p50 / p99 | 1.26× / 1.57× | 1.20× / 1.20× |")
    expect(text).toContain("| 10000 open streams, zero errors | 10000 open, 0 errors | met |")
    expect(text).toContain("| express TTFE p50 ≤ 1.15× the Node handler at 1 | 1.10× | met |")
    expect(text).toContain("| fastify TTFE p50 ≤ 1.15× the Node handler at 1 | 1.50× | **not met** |")
    expect(text).toContain("| lambda TTFE p50 ≤ 1.1× the Node handler at 1 | 1.20× | **not met** |")
  })

  it("lists why held-open streams failed", () => {
    const failing = markdown(
      {
        ...report,
        many: {
          ...report.many!,
          opened: 9_999,
          errors: 1,
          errorMessages: ["status 503: unavailable"]
        }
      },
      "npm run bench",
      200
    )
    expect(failing).toContain("- Convoke (10000 streams): status 503: unavailable")
    expect(text).not.toContain("Errors:")
  })

  it("sets Convoke's CPU beside the Effect floor's, in the table and in the profiles", () => {
    const [main, ...rest] = report.tables
    const withFloor = markdown(
      {
        ...report,
        tables: [
          { ...main!, rows: [...main!.rows, row("Effect floor", 64, 20, 50, 900, { cpuPerRequest: 1.25 })] },
          ...rest
        ],
        profiles: [
          profiled(
            "Convoke",
            [
              ["effect: effect", 400],
              ["garbage collector", 300],
              ["convoke core: TurnLog.ts", 200],
              ["effect: Channel", 100]
            ],
            1000
          ),
          profiled(
            "Effect floor",
            [
              ["effect: effect", 200],
              ["garbage collector", 100]
            ],
            2000
          ),
          profiled("baseline", [["garbage collector", 500]], 1000)
        ]
      },
      "npm run bench",
      200
    )
    // At 64 the baseline's CPU per request is 1 ms, the floor's 1.25 ms and Convoke's 2 ms.
    expect(withFloor).toContain("| 64 | 2.00 | 1.25 | 1.00 | 1.25× | 1.60× |")
    // Per request: Convoke's Effect code is 500 ms over 1000 requests, the floor's 200 ms over 2000.
    expect(withFloor).toContain(
      "| Effect (runtime, Stream, HTTP, SQL statements) | 500.0 µs | 100.0 µs | 0.0 µs |"
    )
    expect(withFloor).toContain("| convoke core: TurnLog.ts | 200.0 µs | 0.0 µs | 0.0 µs |")
    expect(withFloor).toContain("| **busy, per request** | **1000.0 µs** | **150.0 µs** | **500.0 µs** |")
    // Every place has a row: nothing is left over to show.
    expect(withFloor).not.toContain("everything else")
  })
})

describe("profiles side by side", () => {
  it("sums what the first server's top places leave out, for every server", () => {
    const lines = Profile.sideBySide(
      [
        {
          server: "a",
          profile: profile([
            ["effect: effect", 300],
            ["node: http", 100]
          ]),
          requests: 100
        },
        {
          server: "b",
          profile: profile([
            ["node: http", 50],
            ["pg", 150]
          ]),
          requests: 100
        }
      ],
      1
    )
    expect(lines).toEqual([
      "| place | a | b |",
      "|---|---:|---:|",
      "| effect: effect | 3000.0 µs | 0.0 µs |",
      "| everything else | 1000.0 µs | 2000.0 µs |",
      "| **busy, per request** | **4000.0 µs** | **2000.0 µs** |"
    ])
  })
})

describe("the soak section", () => {
  const soak = [START, "## Soak", "", "| growth | 1.2% |", END].join("\n")

  it("survives a bench run verbatim", () => {
    const previous = `# Performance\n\nold tables\n\n${soak}\n`
    const text = markdown(report, "npm run bench", 200, previous)
    expect(sectionOf(text)).toBe(soak)
    expect(text).not.toContain("old tables")
    expect(text.endsWith(`\n\n${soak}\n`)).toBe(true)
  })

  it("is left out of a bench run when the file had none", () => {
    expect(markdown(report, "npm run bench", 200, "# Performance\n")).not.toContain(START)
  })

  it("is replaced between its markers, the rest of the file untouched", () => {
    const document = `# Performance\n\nbench tables\n\n${soak}\n\nafter\n`
    const newer = [START, "## Soak", "", "| growth | 0.4% |", END].join("\n")
    expect(replaceSection(document, newer)).toBe(`# Performance\n\nbench tables\n\n${newer}\n\nafter\n`)
  })

  it("is appended at the end when the file has no markers", () => {
    expect(replaceSection("# Performance\n\nbench tables\n", soak)).toBe(
      `# Performance\n\nbench tables\n\n${soak}\n`
    )
  })
})
