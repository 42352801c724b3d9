// Copies the last full benchmark run (bench/results/full.md) into
// docs/benchmarks.md, between <!-- bench:begin --> and <!-- bench:end -->,
// one heading level down. The README keeps only a five-line summary and the
// chart, written by hand from these tables.
import { readFileSync, writeFileSync } from 'node:fs'

const TARGET = new URL('../docs/benchmarks.md', import.meta.url)
const results = readFileSync(new URL('../bench/results/full.md', import.meta.url), 'utf8')
const body = results
  .replace(/^# .*\n+/, '')
  .replace(/^(#{2,5}) /gm, '#$1 ')
  .replace(/\]\((full|latest)\.svg\)/g, '](../bench/results/$1.svg)')
  .trimEnd()
const page = readFileSync(TARGET, 'utf8')
const begin = '<!-- bench:begin -->'
const end = '<!-- bench:end -->'
const from = page.indexOf(begin)
const to = page.indexOf(end)
if (from < 0 || to < from) throw new Error(`docs/benchmarks.md has no ${begin} ... ${end} section`)
writeFileSync(TARGET, `${page.slice(0, from + begin.length)}\n${body}\n${page.slice(to)}`)
console.log(`docs/benchmarks.md: benchmark tables updated from bench/results/full.md (${body.split('\n').length} lines)`)
