/**
 * A C# test program under Mono, for the tests here: compiled by `mcs`, its
 * tests listed with `--list`, then run by `mono` and the PASS/FAIL/SKIP line
 * it prints for each test read back, so that each C# test is one test here.
 */
import { spawn, spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"

/** Whether Mono's compiler and runtime are installed. */
export const hasMono =
  spawnSync("mcs", ["--version"], { stdio: "ignore" }).status === 0 &&
  spawnSync("mono", ["--version"], { stdio: "ignore" }).status === 0

// Mono comes from Debian's packages, installed by .ci/run; a developer machine
// without it skips these tests, CI never does.
export const runnable = hasMono || process.env.CI !== undefined

/** The C# files in a folder. */
export const sources = (folder: string): Array<string> =>
  readdirSync(folder)
    .filter((file) => file.endsWith(".cs"))
    .map((file) => join(folder, file))

/** Runs `mcs`, waiting for it. */
export const mcs = (args: ReadonlyArray<string>) => spawnSync("mcs", args, { encoding: "utf8" })

/** The names of the program's tests, in order. */
export const listTests = (executable: string): Array<string> =>
  spawnSync("mono", [executable, "--list"], { encoding: "utf8" }).stdout.trim().split("\n")

/** What a run printed, and per test name "PASS" or the line that says why not. */
export interface Run {
  readonly output: string
  readonly results: ReadonlyMap<string, string>
}

/** A run before (or without) running: no output, no results. */
export const notRun: Run = { output: "", results: new Map() }

/** Runs the program with args and reads each named test's result from its output. */
export const runTests = async (
  executable: string,
  names: ReadonlyArray<string>,
  args: ReadonlyArray<string>
): Promise<Run> => {
  const output = await new Promise<string>((resolve, reject) => {
    // Asynchronous on purpose: the servers run in this process.
    const child = spawn("mono", [executable, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => {
      output += chunk
    })
    child.stderr.on("data", (chunk) => {
      output += chunk
    })
    child.on("error", reject)
    child.on("close", () => resolve(output))
  })
  const results = new Map<string, string>()
  for (const line of output.split("\n")) {
    const match = /^(PASS|FAIL|SKIP) (.*)$/.exec(line)
    if (match === null) continue
    const rest = match[2]!
    const name = names.find((candidate) => rest === candidate || rest.startsWith(`${candidate}: `))
    if (name !== undefined) results.set(name, match[1] === "PASS" ? "PASS" : line)
  }
  return { output, results }
}

/** A test's result in a run: "PASS", or what went wrong. */
export const resultOf = (run: Run, name: string): string =>
  run.results.get(name) ?? `no result; output:\n${run.output}`
