/**
 * What the A/B tools (bench/ab.ts, bench/http/ab.ts) share: their `--name=`
 * options, the alternating pairs, and how a set of paired ratios is shown.
 */
import { formatRatio, median } from './stats.js'

/** The value of `--name=value` among `args`, if given. */
export function option (args: readonly string[], name: string): string | undefined {
  return args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
}

/**
 * Measures A and B `pairs` times, one after the other, the order flipped
 * every pair so what drifts within a pair favours neither side; hands each
 * pair to `onPair` as (A, B).
 */
export async function alternatePairs<M> (pairs: number, measureA: () => Promise<M>, measureB: () => Promise<M>, onPair: (ofA: M, ofB: M, pair: number) => void): Promise<void> {
  for (let pair = 0; pair < pairs; pair++) {
    const bFirst = pair % 2 === 1
    const first = await (bFirst ? measureB() : measureA())
    const second = await (bFirst ? measureA() : measureB())
    if (bFirst) onPair(second, first, pair)
    else onPair(first, second, pair)
  }
}

/** `median 0.98x (pairs 0.91x to 1.03x)`. */
export function formatPairs (ratios: readonly number[]): string {
  return `median ${formatRatio(median(ratios))} (pairs ${formatRatio(Math.min(...ratios))} to ${formatRatio(Math.max(...ratios))})`
}
