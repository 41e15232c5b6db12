/**
 * Reading the Prometheus text exposition format (version 0.0.4) the way a
 * scraper does: one sample per line, `name{label="value",…} value`, comments
 * skipped. Enough for the suite to check the series a binding serves.
 *
 * @since 0.1.0
 */

/** One sample of an exposition. */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

const number = (text: string): number =>
  text === "+Inf" ? Number.POSITIVE_INFINITY : text === "-Inf" ? Number.NEGATIVE_INFINITY : Number(text)

/** The samples of an exposition; a line that is neither a comment nor a sample throws. */
export const parse = (text: string): Array<Sample> =>
  text
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = SAMPLE.exec(line)
      if (match === null) throw new Error(`Not a sample of the Prometheus text format: ${line}`)
      const labels: Record<string, string> = {}
      for (const [, name, value] of (match[2] ?? "").matchAll(LABEL)) {
        labels[name!] = value!.replace(/\\(.)/g, (_, escaped: string) => (escaped === "n" ? "\n" : escaped))
      }
      return { name: match[1]!, labels, value: number(match[3]!) }
    })

/** The value of the sample with exactly this name and these labels; `undefined` when there is none. */
export const value = (
  samples: ReadonlyArray<Sample>,
  name: string,
  labels: Readonly<Record<string, string>> = {}
): number | undefined => {
  const wanted = Object.entries(labels)
  return samples.find(
    (sample) =>
      sample.name === name &&
      Object.keys(sample.labels).length === wanted.length &&
      wanted.every(([label, text]) => sample.labels[label] === text)
  )?.value
}
