/**
 * Writes a suite's measurements as Markdown: one table per scenario with the
 * ratios to its reference row, memory per open stream, the targets, and the
 * machine, Node version, command and date that produced them.
 */
import { availableParallelism, cpus, totalmem } from "node:os"
import type { MemoryRow, Report, Row } from "./Suite.ts"

const ms = (value: number) => (Number.isNaN(value) ? "–" : value.toFixed(2))
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`
const ratio = (value: number, reference: number) =>
  reference > 0 ? `${(value / reference).toFixed(2)}×` : "–"

/** The machine the numbers come from. */
export const machine = () =>
  `${availableParallelism()} cores (\`nproc\`), ${cpus()[0]?.model ?? "unknown CPU"}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB memory, Node ${process.version}, ${process.platform} ${process.arch}`

const rowLine = (row: Row, reference: Row | undefined) =>
  `| ${row.server} | ${row.concurrency} | ${row.requests} | ${ms(row.p50)} | ${ms(row.p95)} | ${ms(row.p99)} | ${ms(row.max)} | ${ms(row.doneP50)} | ${row.perSecond.toFixed(0)} | ${row.errors} | ${row.temporary} | ${mib(row.peakRss)} | ${
    reference === undefined || reference === row
      ? "–"
      : `p50 ${ratio(row.p50, reference.p50)}, p99 ${ratio(row.p99, reference.p99)}, req/s ${ratio(row.perSecond, reference.perSecond)}`
  } |`

const memoryLine = (row: MemoryRow) =>
  `| ${row.server} | ${row.streams} | ${mib(row.idleRss)} | ${mib(row.openRss)} | ${kib(row.perStream)} | ${ms(row.ttfeP50)} | ${ms(row.ttfeP99)} | ${row.errors} | ${row.temporary} |`

/** Renders the report. */
export const markdown = (report: Report, command: string, seconds: number): string => {
  const lines: Array<string> = [
    "# Performance",
    "",
    "Convoke side by side with the leanest hand-written server of the same contract",
    "(`apps/bench/src/Baseline.ts`: `node:http` + `pg`, the same tables, the same",
    "conversation INSERT before the metadata event, the same echo timing, the user and",
    "assistant message INSERTs). Both run as child processes against the same",
    "throwaway PostgreSQL database, in alternating rounds, on loopback.",
    "",
    `- Machine: ${machine()}`,
    `- Command: \`${command}\` (${seconds.toFixed(0)} s)`,
    `- Date: ${new Date().toISOString()}`,
    "- Auth: both anonymous (Convoke without API keys on loopback; the baseline checks nothing).",
    "- Convoke: the reference server CLI with rate limits off (`CONVOKE_RATE_LIMIT_*=0`), logs off",
    "  (`CONVOKE_LOG_FORMAT=off`), metrics on (default), creation budget 10 s so no id is temporary",
    "  because the machine is busy, cleanup job off. It also writes an audit row per new",
    "  conversation (off the request path); the baseline does not.",
    "- Short streams: the message `hello benchmark world`, echoed as 4 content events with 5 ms",
    "  before each word. Held-open streams: 40 words with 5 s before each word.",
    "- TTFE: from the start of the request to the first body chunk holding the whole metadata",
    "  event; `done`: to `data: [DONE]`. Percentiles by nearest rank over every round.",
    "  Peak RSS: the server process's VmRSS sampled every 50 ms during the rounds.",
    "- The load generator runs on the same 2 cores as the server: absolute numbers include its",
    "  own cost; the ratios compare like with like.",
    ""
  ]
  for (const table of report.tables) {
    const reference =
      table.reference === undefined ? undefined : table.rows.filter((row) => row.server === table.reference)
    lines.push(`## ${table.title}`, "", table.note, "")
    lines.push(
      "| server | concurrency | requests | TTFE p50 ms | p95 | p99 | max | done p50 ms | req/s | errors | temporary ids | peak RSS | vs reference |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for (const row of table.rows) {
      lines.push(
        rowLine(
          row,
          reference?.find((candidate) => candidate.concurrency === row.concurrency)
        )
      )
    }
    if (table.roundRatios !== undefined && table.roundRatios.length > 0) {
      lines.push(
        "",
        `TTFE p50 ratio to \`${table.reference}\` in each round (noise): ${table.roundRatios.join(" · ")}`
      )
    }
    const failures = table.rows.flatMap((row) =>
      row.errorMessages.map((message) => `${row.server}: ${message}`)
    )
    if (failures.length > 0) lines.push("", "Errors:", ...failures.map((failure) => `- ${failure}`))
    lines.push("")
  }
  lines.push(
    "## Memory per open stream",
    "",
    "Slow streams held open at once; per stream = (RSS with every stream open − idle RSS) / streams.",
    "",
    "| server | streams | idle RSS | RSS open | per stream | TTFE p50 ms | TTFE p99 ms | errors | temporary ids |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...report.memory.map(memoryLine),
    ...(report.many === undefined
      ? []
      : [memoryLine({ ...report.many, server: `${report.many.server} (one instance)` })]),
    ""
  )
  const convoke = report.memory.find((row) => row.server === "Convoke")
  const baseline = report.memory.find((row) => row.server === "baseline")
  if (convoke !== undefined && baseline !== undefined) {
    lines.push(
      `Memory per open stream, Convoke / baseline: ${ratio(convoke.perStream, baseline.perStream)}`,
      ""
    )
  }
  return `${lines.join("\n")}\n`
}
