/**
 * The target lines of several runs' results side by side, each judged on
 * its median across them. One full run on this machine can move a line by
 * 0.4x (runs O, P and Q of the same code, docs/benchmarks.md), more than
 * most targets' margins, so the median of three runs says more than any
 * one of them. INFO lines (the floors, the A/A control) with `--info`.
 * `--last=N` adds the N newest committed versions of
 * bench/results/full.json (each full run in the README is committed), read
 * from git history.
 *
 *   node build/bench/runs.js bench/results/full.json /tmp/P/full.json /tmp/O/full.json [--info]
 *   node build/bench/runs.js --last=3 [--info]
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { median } from './lib/stats.js'
import { formatFigure, type TargetCheck } from './lib/targets.js'

/** A target line as a results file holds it: JSON has no NaN, so an INFO line's threshold is null. */
type StoredCheck = Omit<TargetCheck, 'threshold'> & { threshold: number | null }

const FULL_RESULTS = 'bench/results/full.json'
/** The repository (this file runs from build/bench), so `--last` works from any directory. */
const ROOT = path.resolve(__dirname, '..', '..')

/** A results file to read: a path, or a commit whose {@link FULL_RESULTS} it is. */
interface Source { name: string, text: () => string }

function checksOf (source: Source): StoredCheck[] {
  const results = JSON.parse(source.text()) as { targets?: StoredCheck[] }
  if (!Array.isArray(results.targets)) throw new Error(`${source.name} holds no target lines`)
  return results.targets
}

/** The `count` newest commits that changed {@link FULL_RESULTS}, newest first. */
function committedRuns (count: number): Source[] {
  if (!Number.isSafeInteger(count) || count < 1) throw new Error('--last= takes a positive whole number of runs')
  const commits = execFileSync('git', ['log', `-n${count}`, '--format=%h', '--', FULL_RESULTS], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter((line) => line !== '')
  if (commits.length < count) throw new Error(`git history holds ${commits.length} versions of ${FULL_RESULTS}, not ${count}`)
  return commits.map((commit) => ({
    name: `${commit}:${FULL_RESULTS}`,
    text: () => execFileSync('git', ['show', `${commit}:${FULL_RESULTS}`], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  }))
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
  const last = args.find((arg) => arg.startsWith('--last='))
  const sources: Source[] = args.filter((arg) => !arg.startsWith('--')).map((file) => ({ name: file, text: () => readFileSync(file, 'utf8') }))
  if (last !== undefined) sources.push(...committedRuns(Number(last.slice('--last='.length))))
  if (sources.length === 0) throw new Error('usage: runs.js <results.json>... [--last=N] [--info]')
  const out = lines(sources.map(checksOf), args.includes('--info'))
  process.stdout.write(`${sources.length} runs: ${sources.map((source) => source.name).join(', ')}\n${out.join('\n')}\n`)
}

main()
