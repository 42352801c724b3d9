/**
 * Scores a run again from its samples: the summaries, ratios and PASS/MISS
 * lines of a results file are computed afresh by the current code, and the
 * file's .json, .md and .svg rewritten. For when the way a run is scored
 * changes: the same samples then show what the change alone moves.
 *
 *   node build/bench/rescore.js [bench/results/full.json]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { summarize as summarizeClient } from './client/suite.js'
import { summarize as summarizeHttp } from './http/suite.js'
import { machineLine } from './lib/machine.js'
import { renderMarkdown, type BenchResult } from './lib/report.js'
import { renderSvg } from './lib/svg.js'
import { clientTargets, httpTargets, targetLines } from './lib/targets.js'

function rescore (result: BenchResult): BenchResult {
  const { client, http } = result
  if (client !== undefined) client.summary = summarizeClient(client.samples, client.scenarios, client.clients)
  if (http !== undefined) http.summary = summarizeHttp(http.samples, http.variants, http.timing.connections)
  const targets = [...(client === undefined ? [] : clientTargets(client)), ...(http === undefined ? [] : httpTargets(http))]
  return { ...result, targets }
}

function main (): void {
  const file = path.resolve(process.argv[2] ?? path.join(__dirname, '../../bench/results/full.json'))
  const result = rescore(JSON.parse(readFileSync(file, 'utf8')) as BenchResult)
  const base = file.replace(/\.json$/, '')
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`)
  writeFileSync(`${base}.md`, renderMarkdown(result))
  writeFileSync(`${base}.svg`, renderSvg(result))
  process.stdout.write(`Targets (${machineLine(result.machine)}), scored again:\n${targetLines(result.targets).join('\n')}\n`)
  process.stdout.write(`wrote ${base}.json, .md and .svg\n`)
}

main()
