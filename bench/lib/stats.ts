/** Small statistics and formatting helpers. */

export function median (values: readonly number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** `a / b`, or NaN when either is missing or b is 0. */
export function ratio (a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return NaN
  return a / b
}

/** 123456 -> `123,456`. */
export function formatCount (value: number): string {
  if (!Number.isFinite(value)) return 'n/a'
  return Math.round(value).toLocaleString('en-US')
}

/** 1.2345 -> `1.23x`. */
export function formatRatio (value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a'
}

/**
 * The median over rounds of `pick(a)` over `pick(b)` in the same round. The
 * bench measures every contender once per round, back to back, so a machine
 * that slows down or speeds up between rounds moves both sides of a round
 * together; the medians of each side, taken apart, may come from rounds of
 * different speed (run M: 104k to 157k gets/s between rounds of one client
 * at 4 in flight, which put the medians at 0.80x where every round but one
 * was 0.97x to 1.01x).
 */
export function pairedRatio<T extends { round: number }> (a: readonly T[], b: readonly T[], pick: (sample: T) => number): number {
  return median(roundRatios(a, b, pick))
}

/** `pick(a)` over `pick(b)` for each round both were measured in, in the order of `a`. */
export function roundRatios<T extends { round: number }> (a: readonly T[], b: readonly T[], pick: (sample: T) => number): number[] {
  const byRound = new Map(b.map((sample) => [sample.round, pick(sample)]))
  return a.flatMap((sample) => {
    const value = ratio(pick(sample), byRound.get(sample.round))
    return Number.isFinite(value) ? [value] : []
  })
}

/** Milliseconds with two decimals. */
export function formatMs (value: number): string {
  return Number.isFinite(value) ? value.toFixed(2) : 'n/a'
}

const started = Date.now()

/** Progress on the terminal (stderr), stamped with the seconds since start. */
export function progress (message: string): void {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(6)
  process.stderr.write(`[${seconds}s] ${message}\n`)
}
