// Copies the last full benchmark run (bench/results/full.md) into the README,
// between <!-- bench:begin --> and <!-- bench:end -->, one heading level down.
import { readFileSync, writeFileSync } from 'node:fs'

const README = new URL('../README.md', import.meta.url)
const results = readFileSync(new URL('../bench/results/full.md', import.meta.url), 'utf8')
const body = results
  .replace(/^# .*\n+/, '')
  .replace(/^(#{2,5}) /gm, '#$1 ')
  .replace(/\]\((full|latest)\.svg\)/g, '](bench/results/$1.svg)')
  .trimEnd()
const readme = readFileSync(README, 'utf8')
const begin = '<!-- bench:begin -->'
const end = '<!-- bench:end -->'
const from = readme.indexOf(begin)
const to = readme.indexOf(end)
if (from < 0 || to < from) throw new Error(`README.md has no ${begin} ... ${end} section`)
writeFileSync(README, `${readme.slice(0, from + begin.length)}\n${body}\n${readme.slice(to)}`)
console.log(`README.md: benchmark section updated from bench/results/full.md (${body.split('\n').length} lines)`)
