/**
 * The soak's section of `docs/performance.md`: its figures (resident memory
 * and open file descriptors after the warm-up, turns by kind, errors, TTFE),
 * and the three verdicts of the issue.
 */
import { machine } from "./Report.ts"
import type { Kind, KindCount } from "./SoakLoad.ts"
import { END, START } from "./SoakSection.ts"

/** Resident memory may grow this much (%) from the end of the warm-up to the end. */
export const GROWTH_LIMIT = 5
/** Open file descriptors at the end may exceed the end of the warm-up by this many. */
export const FD_SLACK = 5

/** One reading of the server, taken every 10 s. */
export interface Sample {
  /** Seconds since the load started. */
  readonly seconds: number
  readonly rss: number
  readonly openFiles: number
  /** From `/metrics`, when it answered. */
  readonly streamsActive: number | undefined
  readonly turnLogTurns: number | undefined
  readonly turnLogEvents: number | undefined
  readonly turnLogBytes: number | undefined
  /** Turns done so far, and failed so far. */
  readonly turns: number
  readonly errors: number
}

/** Everything a soak run measured. */
export interface Result {
  readonly command: string
  readonly minutes: number
  readonly warmupMinutes: number
  readonly concurrency: number
  readonly redis: boolean
  readonly echoDelayMs: number
  readonly samples: ReadonlyArray<Sample>
  /** The reading a few seconds after the load stopped. */
  readonly drained: Sample | undefined
  readonly kinds: Readonly<Record<Kind, KindCount>>
  readonly stopsAfterEnd: number
  readonly errors: ReadonlyArray<{
    readonly check: string
    readonly count: number
    readonly samples: ReadonlyArray<string>
  }>
  readonly ttfeP50: number
  readonly ttfeP99: number
  readonly seconds: number
}

/** The figures the verdicts rest on. */
export interface Figures {
  readonly warmup: Sample
  readonly last: Sample
  readonly growth: number
  readonly minRss: number
  readonly maxRss: number
  readonly maxOpenFiles: number
  readonly errors: number
  readonly verdicts: ReadonlyArray<{
    readonly target: string
    readonly measured: string
    readonly met: boolean
  }>
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
const optional = (value: number | undefined) => (value === undefined ? "–" : String(value))

/** The figures of a run: from the first reading at or after the warm-up to the last under load. */
export const figures = (result: Result): Figures | undefined => {
  const after = result.samples.filter((sample) => sample.seconds >= result.warmupMinutes * 60)
  const warmup = after[0]
  const last = after.at(-1)
  if (warmup === undefined || last === undefined) return undefined
  const growth = ((last.rss - warmup.rss) / warmup.rss) * 100
  const errors = result.errors.reduce((sum, error) => sum + error.count, 0)
  const maxOpenFiles = Math.max(...after.map((sample) => sample.openFiles))
  return {
    warmup,
    last,
    growth,
    minRss: Math.min(...after.map((sample) => sample.rss)),
    maxRss: Math.max(...after.map((sample) => sample.rss)),
    maxOpenFiles,
    errors,
    verdicts: [
      {
        target: `RSS growth after the warm-up < ${GROWTH_LIMIT}%`,
        measured: `${growth.toFixed(1)}% (${mib(warmup.rss)} → ${mib(last.rss)})`,
        met: growth < GROWTH_LIMIT
      },
      { target: "0 errors", measured: String(errors), met: errors === 0 },
      {
        target: `open file descriptors flat (end ≤ warm-up end + ${FD_SLACK})`,
        measured: `${warmup.openFiles} → ${last.openFiles} (max ${maxOpenFiles})`,
        met: last.openFiles <= warmup.openFiles + FD_SLACK
      }
    ]
  }
}

/** The verdict lines, for the console. */
export const verdictLines = (result: Result): Array<string> => {
  const figured = figures(result)
  if (figured === undefined) return ["no reading after the warm-up: run longer than the warm-up"]
  return figured.verdicts.map(
    (verdict) => `${verdict.met ? "met" : "NOT MET"}: ${verdict.target}: ${verdict.measured}`
  )
}

/** The section, markers included. */
export const section = (result: Result): string => {
  const figured = figures(result)
  const lines = [
    START,
    "## Soak",
    "",
    "The reference server under constant load for a long time: does it keep its memory, its",
    "file descriptors and its answers? Run by hand (not in CI), on a quiet machine:",
    "",
    "```sh",
    "npm run soak                # 30 min, 64 concurrent turns, the first 12 min a warm-up",
    "npm run soak -- --minutes 3 --warmup-minutes 1 --concurrency 64 --redis",
    "```",
    "",
    "(`npm run soak -- …` in `apps/bench` skips the install step; `--redis` puts the turn log in the",
    "Redis of `REDIS_URL`, default `redis://127.0.0.1:6379`.) It exits non-zero when a verdict is not met.",
    "",
    "It starts the reference server CLI on a throwaway PostgreSQL database with the bench's",
    "settings (rate limits off, logs off, metrics on; `--redis`: the turn log in Redis), the echo",
    `model pausing ${result.echoDelayMs} ms before each word, and keeps \`concurrency\` turns running: about half`,
    "new conversations, a quarter continued ones (up to 6 turns), 15% whose connection drops after",
    "the metadata event or a content event or two and that are read again through",
    "`GET /api/v0.3/conversations/{id}/stream` with `Last-Event-ID`, and 10% stopped with",
    "`POST /api/v0.3/conversations/{id}/stop` as soon as the metadata event arrives. Every answer is",
    "checked: the metadata event first, the `id:` lines counting up with no gap, the echo's exact",
    "text, `[DONE]` last; a resume gives exactly the rest; a stop answers `202` with the turn's id",
    "and the stream ends with the `cancelled` error event then `[DONE]` (a stop answered `204`,",
    "the turn already over, must come with a complete stream; it is counted apart). Every 10 s it",
    "reads the server's VmRSS (the least of 5 readings over 1 s: one reading swings with the",
    "garbage collector), its open file descriptors (`/proc/<pid>/fd`) and, from `/metrics`,",
    "`streams_active`, `turn_log_turns`, `turn_log_events` and `turn_log_bytes`.",
    "",
    `- Machine: ${machine()}`,
    `- Command: \`${result.command}\` (${(result.seconds / 60).toFixed(1)} min in all)`,
    `- Date: ${new Date().toISOString()}`,
    `- Load: ${result.concurrency} concurrent turns for ${result.minutes} min, the first ${result.warmupMinutes} min a warm-up; turn log ${result.redis ? "in Redis" : "in memory"}.`,
    ...(result.redis
      ? []
      : [
          "- The in-memory turn log keeps every turn for 10 minutes after it ends (64 MiB of turns at most,",
          "  estimated), so it grows by design until that cap or for the first 10 minutes of load: with a",
          "  shorter warm-up, its filling counts as growth (compare the turn log columns below with the RSS)."
        ]),
    ""
  ]
  if (figured !== undefined) {
    lines.push(
      "| | value |",
      "|---|---|",
      `| RSS at the end of the warm-up | ${mib(figured.warmup.rss)} |`,
      `| RSS at the end | ${mib(figured.last.rss)} |`,
      `| growth | ${figured.growth.toFixed(1)}% |`,
      `| RSS min / max after the warm-up | ${mib(figured.minRss)} / ${mib(figured.maxRss)} |`,
      `| open file descriptors at the end of the warm-up / at the end / max after it | ${figured.warmup.openFiles} / ${figured.last.openFiles} / ${figured.maxOpenFiles} |`,
      `| after the load stopped: streams active, file descriptors, RSS | ${result.drained === undefined ? "–" : `${optional(result.drained.streamsActive)}, ${result.drained.openFiles}, ${mib(result.drained.rss)}`} |`,
      `| TTFE of \`POST /chat\`, p50 / p99 | ${result.ttfeP50.toFixed(2)} ms / ${result.ttfeP99.toFixed(2)} ms |`,
      ""
    )
  }
  lines.push("| turns | done | failed |", "|---|---:|---:|")
  for (const [kind, count] of Object.entries(result.kinds))
    lines.push(`| ${kind} | ${count.done} | ${count.failed} |`)
  lines.push(`| (stops that found the turn over, \`204\`) | ${result.stopsAfterEnd} | |`, "")
  if (result.errors.length > 0) {
    lines.push("Errors:")
    for (const error of result.errors)
      lines.push(
        `- ${error.check} (${error.count}): ${error.samples.map((sample) => `\`${sample}\``).join("; ")}`
      )
    lines.push("")
  }
  if (figured !== undefined) {
    lines.push("| target | measured | verdict |", "|---|---|---|")
    for (const verdict of figured.verdicts)
      lines.push(`| ${verdict.target} | ${verdict.measured} | ${verdict.met ? "met" : "**not met**"} |`)
    lines.push("")
  } else {
    lines.push("No reading after the warm-up: the run was shorter than its warm-up.", "")
  }
  // One reading a minute keeps the table short; the warm-up's end and the last are always in.
  const shown = result.samples.filter(
    (sample, index) =>
      index === result.samples.length - 1 ||
      sample === figured?.warmup ||
      Math.round(sample.seconds) % 60 < 10
  )
  lines.push(
    "| minute | RSS | file descriptors | streams active | turn log turns | turn log events | turn log size | turns done | errors |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...shown.map(
      (sample) =>
        `| ${(sample.seconds / 60).toFixed(1)} | ${mib(sample.rss)} | ${sample.openFiles} | ${optional(sample.streamsActive)} | ${optional(sample.turnLogTurns)} | ${optional(sample.turnLogEvents)} | ${sample.turnLogBytes === undefined ? "–" : mib(sample.turnLogBytes)} | ${sample.turns} | ${sample.errors} |`
    ),
    "",
    END
  )
  return lines.join("\n")
}
