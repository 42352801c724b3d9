/**
 * The target lines of several runs' results side by side, each judged on
 * its median across them. One full run on this machine can move a line by
 * 0.4x (runs O, P and Q of the same code, docs/benchmarks.md), more than
 * most targets' margins, so the median of three runs says more than any
 * one of them. INFO lines (the floors, the A/A control) with `--info`.
 *
 *   node build/bench/runs.js bench/results/full.json /tmp/P/full.json /tmp/O/full.json [--info]
 */
import { readFileSync } from 'node:fs'
import { median } from './lib/stats.js'
import { formatFigure, type TargetCheck } from './lib/targets.js'

/** A target line as a results file holds it: JSON has no NaN, so an INFO line's threshold is null. */
type StoredCheck = Omit<TargetCheck, 'threshold'> & { threshold: number | null }

function checksOf (file: string): StoredCheck[] {
  const results = JSON.parse(readFileSync(file, 'utf8')) as { targets?: StoredCheck[] }
  if (!Array.isArray(results.targets)) throw new Error(`${file} holds no target lines`)
  return results.targets
}

/** One line per target id, in the order of the first file that has it. */
function lines (runs: StoredCheck[][], withInfo: boolean): string[] {
  const ids = [...new Set(runs.flat().map((check) => check.id))]
  return ids.flatMap((id) => {
    const found = runs.map((checks) => checks.find((check) => check.id === id))
    const first = found.find((check) => check !== undefined) as StoredCheck
    const judged = first.status === 'PASS' || first.status === 'MISS'
    if (!judged && !(withInfo && first.status === 'INFO')) return []
    const values = found.filter((check): check is StoredCheck => check !== undefined && Number.isFinite(check.measured)).map((check) => check.measured)
    if (values.length === 0) return []
    const middle = median(values)
    const threshold = first.threshold
    const status = threshold === null ? 'INFO' : (first.atMost === true ? middle <= threshold : middle >= threshold) ? 'PASS' : 'MISS'
    const each = found.map((check) => check === undefined || !Number.isFinite(check.measured) ? '-' : formatFigure(check.measured, first.unit)).join(', ')
    return [`${status.padEnd(4)}  median ${formatFigure(middle, first.unit)} (${each})  ${first.description}`]
  })
}

function main (): void {
  const args = process.argv.slice(2)
  const files = args.filter((arg) => !arg.startsWith('--'))
  if (files.length === 0) throw new Error('usage: runs.js <results.json>... [--info]')
  const out = lines(files.map(checksOf), args.includes('--info'))
  process.stdout.write(`${files.length} runs: ${files.join(', ')}\n${out.join('\n')}\n`)
}

main()
