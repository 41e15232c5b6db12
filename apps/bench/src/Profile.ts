/**
 * Where a server's CPU goes: reads a V8 `.cpuprofile` (written by
 * `node --cpu-prof`), keeps the samples of the measured window (not start-up
 * or warm-up), and sums the sampled time by where the code lives (the
 * Effect runtime, schema, SQL client, the `pg` driver, Node's HTTP layer,
 * each Convoke module, the garbage collector), both self time and the time of
 * whole call trees entered in each place.
 */
import { readFileSync } from "node:fs"

/** One node of a V8 CPU profile's call tree. */
interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number> | undefined
}

/** A V8 CPU profile, as `--cpu-prof` writes it. */
interface CpuProfile {
  /** Microseconds on the monotonic clock (`process.hrtime`'s, in another process too). */
  readonly startTime: number
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** The place a frame's code lives in, coarse enough to act on. */
export const placeOf = (url: string, functionName: string): string => {
  if (url === "") {
    if (functionName === "(garbage collector)") return "garbage collector"
    if (functionName === "(idle)") return "idle"
    if (functionName === "(program)") return "V8 / native (program)"
    return `native: ${functionName || "(anonymous)"}`
  }
  const modules = url.lastIndexOf("/node_modules/")
  if (modules >= 0) {
    const rest = url.slice(modules + "/node_modules/".length).split("/")
    const name = rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!
    if (name === "effect") {
      const file = rest.at(-1)!.replace(/\.js$/, "")
      return `effect: ${file}`
    }
    return name
  }
  if (url.startsWith("node:")) {
    const name = url.slice("node:".length)
    if (/http|_http/.test(name)) return "node: http"
    if (/stream/.test(name)) return "node: streams"
    if (/net|tcp|dns/.test(name)) return "node: net"
    if (/timers/.test(name)) return "node: timers"
    return `node: ${name.replace(/^internal\//, "").split("/")[0]}`
  }
  const source = /\/(packages|apps)\/([^/]+)\/src\/(.+)$/.exec(url)
  if (source !== null) return `convoke ${source[2]}: ${source[3]}`
  return url
}

/** Milliseconds by place: self time, and the time of call trees entered there. */
export interface Breakdown {
  readonly totalMs: number
  readonly idleMs: number
  readonly self: ReadonlyArray<readonly [place: string, ms: number]>
  readonly inclusive: ReadonlyArray<readonly [place: string, ms: number]>
}

/** A span of the monotonic clock, in microseconds (`process.hrtime.bigint() / 1000n`). */
export interface Window {
  readonly from: number
  readonly to: number
}

/** The monotonic clock in microseconds, as profiles time their samples. */
export const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n)

/** Sums a profile by place, counting only the samples taken within `window` when one is given. */
export const breakdown = (profile: CpuProfile, window?: Window): Breakdown => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const selfMs = new Map<number, number>()
  let at = profile.startTime
  for (const [index, id] of profile.samples.entries()) {
    const delta = profile.timeDeltas[index] ?? 0
    at += delta
    if (window !== undefined && (at < window.from || at > window.to)) continue
    selfMs.set(id, (selfMs.get(id) ?? 0) + delta / 1000)
  }
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let totalMs = 0
  let idleMs = 0
  for (const [id, ms] of selfMs) {
    const node = byId.get(id)!
    const place = placeOf(node.callFrame.url, node.callFrame.functionName)
    totalMs += ms
    if (place === "idle") {
      idleMs += ms
      continue
    }
    self.set(place, (self.get(place) ?? 0) + ms)
    // Each place on the stack once: a sample counts toward every place it passed through.
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame
      if (frame.functionName === "(root)") continue
      const above = placeOf(frame.url, frame.functionName)
      if (seen.has(above)) continue
      seen.add(above)
      inclusive.set(above, (inclusive.get(above) ?? 0) + ms)
    }
  }
  const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1])
  return { totalMs, idleMs, self: sorted(self), inclusive: sorted(inclusive) }
}

/** Reads a `.cpuprofile` file and sums it by place. */
export const read = (path: string, window?: Window): Breakdown =>
  breakdown(JSON.parse(readFileSync(path, "utf8")), window)

/** The breakdown as Markdown: the `top` places by self time and by call tree, per request when `requests` is given. */
export const markdown = (result: Breakdown, requests: number, top = 25): Array<string> => {
  const busy = result.totalMs - result.idleMs
  const perRequest = (ms: number) => `${((ms * 1000) / requests).toFixed(1)} µs`
  const share = (ms: number) => `${((ms / busy) * 100).toFixed(1)}%`
  return [
    `Busy ${busy.toFixed(0)} ms of ${result.totalMs.toFixed(0)} ms sampled, ${requests} requests: ${perRequest(busy)} per request.`,
    "",
    "| place | self | share | per request | | place | in call tree | share |",
    "|---|---:|---:|---:|---|---|---:|---:|",
    ...Array.from({ length: top }, (_, index) => {
      const self = result.self[index]
      const tree = result.inclusive[index]
      return `| ${self?.[0] ?? ""} | ${self === undefined ? "" : `${self[1].toFixed(0)} ms`} | ${self === undefined ? "" : share(self[1])} | ${self === undefined ? "" : perRequest(self[1])} | | ${tree?.[0] ?? ""} | ${tree === undefined ? "" : `${tree[1].toFixed(0)} ms`} | ${tree === undefined ? "" : share(tree[1])} |`
    })
  ]
}

/** The family of a place: the Effect runtime, Convoke's own code, the SQL client, Node, socket writes, the collector. */
export const familyOf = (place: string): string => {
  if (place.startsWith("effect: ")) return "Effect (runtime, Stream, HTTP, SQL statements)"
  if (place.startsWith("convoke ")) return "Convoke's own code"
  if (place === "native: writev" || place === "native: writeBuffer" || place === "native: writeUtf8String")
    return "socket writes (system calls)"
  if (place === "garbage collector") return place
  if (place === "@effect/sql-pg" || place === "pg" || place === "pg-protocol" || place === "pg-pool")
    return "PostgreSQL driver"
  if (place.startsWith("node: ")) return "Node (HTTP, streams, timers, async context)"
  return "other (V8, native, other packages)"
}

/** A breakdown's self time summed by family (`familyOf`). */
export const byFamily = (breakdown: Breakdown): Breakdown => {
  const self = new Map<string, number>()
  for (const [place, ms] of breakdown.self) self.set(familyOf(place), (self.get(familyOf(place)) ?? 0) + ms)
  return { ...breakdown, self: [...self].sort((a, b) => b[1] - a[1]), inclusive: [] }
}

/** One server's profile, for `sideBySide`. */
export interface Column {
  readonly server: string
  readonly profile: Breakdown
  readonly requests: number
}

/**
 * Self time per request by place, the servers side by side: the places that
 * take the most in the first server, then a row of everything else (when
 * anything is left), and the busy time per request in all. What one server spends over another, place by place.
 */
export const sideBySide = (columns: ReadonlyArray<Column>, top = 20): Array<string> => {
  const perRequest = columns.map(({ profile, requests }) => {
    const places = new Map(profile.self.map(([place, ms]) => [place, (ms * 1000) / requests]))
    return { places, busy: ((profile.totalMs - profile.idleMs) * 1000) / requests }
  })
  const first = columns[0]?.profile.self.slice(0, top).map(([place]) => place) ?? []
  const shown = new Set(first)
  const cell = (micros: number) => `${micros.toFixed(1)} µs`
  const rest = perRequest.map(
    ({ places, busy }) =>
      busy - [...places].reduce((sum, [place, micros]) => (shown.has(place) ? sum + micros : sum), 0)
  )
  return [
    `| place | ${columns.map(({ server }) => server).join(" | ")} |`,
    `|---|${columns.map(() => "---:").join("|")}|`,
    ...first.map(
      (place) => `| ${place} | ${perRequest.map(({ places }) => cell(places.get(place) ?? 0)).join(" | ")} |`
    ),
    // Left out when the rows above hold every place (what remains is rounding).
    ...(rest.every((micros) => Math.abs(micros) < 0.05)
      ? []
      : [`| everything else | ${rest.map(cell).join(" | ")} |`]),
    `| **busy, per request** | ${perRequest.map(({ busy }) => `**${cell(busy)}**`).join(" | ")} |`
  ]
}
