/**
 * A server under test as a child process: started with `node`, ready once it
 * prints its URL, its memory read from `/proc/<pid>/status` (VmRSS now,
 * VmHWM the peak), stopped with SIGTERM (SIGKILL if it lingers).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

/** A running server process. */
export interface ServerProcess {
  readonly name: string
  readonly url: string
  readonly pid: number
  /** Resident memory now, in bytes (0 once the process is gone). */
  readonly rss: () => number
  /** CPU time the process has used so far (user + system), in seconds. */
  readonly cpuSeconds: () => number
  /** Samples the resident memory every `intervalMs` until the returned function is called, which gives the peak. */
  readonly sampleRss: (intervalMs?: number) => () => number
  readonly stop: () => Promise<void>
}

/** Every server process still running, so `killAll` can end them if the benchmark itself is stopped. */
const running = new Set<ChildProcess>()

/** Kills every server process still running (synchronously: fit for an `exit` handler). */
export const killAll = (): void => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
}

/** Reads one `kB` field of `/proc/<pid>/status`, in bytes. */
export const statusField = (pid: number, field: "VmRSS" | "VmHWM"): number => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)
    return match === null ? 0 : Number(match[1]) * 1024
  } catch {
    return 0
  }
}

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`: 100 on Linux). */
const CLOCK_TICKS = 100

/** User + system CPU time of a process, in seconds, from `/proc/<pid>/stat` (0 once it is gone). */
export const cpuSeconds = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name (which may hold spaces) start at state, field 3; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return 0
  }
}

/** How many file descriptors the process has open (sockets included), from `/proc/<pid>/fd`; 0 once it is gone. */
export const openFiles = (pid: number): number => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return 0
  }
}

/** Options of `start`. */
export interface StartOptions {
  readonly name: string
  /** Arguments to `node` (the script and its flags). */
  readonly args: ReadonlyArray<string>
  readonly env: Record<string, string>
  /** How the ready line names the URL; default: `listening <url>`. */
  readonly ready?: RegExp | undefined
  readonly timeoutMs?: number | undefined
}

/** Starts a server process and waits until it says where it listens. */
export const start = (options: StartOptions): Promise<ServerProcess> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [...options.args], {
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    running.add(child)
    child.once("exit", () => running.delete(child))
    const ready = options.ready ?? /listening (http:\/\/\S+)/
    let output = ""
    let started = false
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${options.name} did not start within ${options.timeoutMs ?? 60_000} ms:\n${output}`))
    }, options.timeoutMs ?? 60_000)
    const onOutput = (chunk: Buffer) => {
      if (started) return
      output += chunk.toString("utf8")
      const match = ready.exec(output)
      if (match === null) return
      started = true
      clearTimeout(timer)
      const pid = child.pid!
      resolve({
        name: options.name,
        url: match[1]!,
        pid,
        rss: () => statusField(pid, "VmRSS"),
        cpuSeconds: () => cpuSeconds(pid),
        sampleRss: (intervalMs = 50) => {
          let peak = statusField(pid, "VmRSS")
          const interval = setInterval(() => {
            peak = Math.max(peak, statusField(pid, "VmRSS"))
          }, intervalMs)
          return () => {
            clearInterval(interval)
            return Math.max(peak, statusField(pid, "VmRSS"))
          }
        },
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done()
            const kill = setTimeout(() => child.kill("SIGKILL"), 10_000)
            child.once("exit", () => {
              clearTimeout(kill)
              done()
            })
            child.kill("SIGTERM")
          })
      })
    }
    child.stdout!.on("data", onOutput)
    child.stderr!.on("data", onOutput)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      if (!started)
        reject(new Error(`${options.name} exited (${code ?? signal}) before listening:\n${output}`))
    })
  })
