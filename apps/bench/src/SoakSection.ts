/**
 * The markers that fence the soak's section of `docs/performance.md`, so the
 * soak and the bench each rewrite only their own part of the file: the soak
 * replaces what lies between them, the bench carries it over verbatim.
 */

/** The section's first line. */
export const START = "<!-- soak:start -->"
/** The section's last line. */
export const END = "<!-- soak:end -->"

/** The soak section of `document`, markers included, or `undefined` if it has none. */
export const sectionOf = (document: string): string | undefined => {
  const start = document.indexOf(START)
  const end = document.indexOf(END, start)
  return start < 0 || end < 0 ? undefined : document.slice(start, end + END.length)
}

/** `document` with its soak section replaced by `section`, or with `section` appended if it had none. */
export const replaceSection = (document: string, section: string): string => {
  const current = sectionOf(document)
  if (current !== undefined) return document.replace(current, () => section)
  return `${document.trimEnd()}\n\n${section}\n`
}
