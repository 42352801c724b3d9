/** The result file and its Markdown rendering. */
import type { ClientSuiteResult } from '../client/suite.js'
import type { HttpSuiteResult } from '../http/suite.js'
import { machineLine, type Machine } from './machine.js'
import { DISTURBED_CORES } from './cpu.js'
import { formatCount, formatMs, formatRatio } from './stats.js'
import { targetLines, type TargetCheck } from './targets.js'

export interface BenchResult {
  schema: 1
  /** ISO time the run started. */
  date: string
  mode: 'quick' | 'full'
  command: string
  /** Wall time of the whole run, s. */
  durationSec: number
  machine: Machine
  client?: ClientSuiteResult
  http?: HttpSuiteResult
  targets: TargetCheck[]
  notes: string[]
}

function table (header: string[], rows: string[][], align: Array<'l' | 'r'>): string {
  const rule = align.map((a) => a === 'r' ? '---:' : ':---')
  return [header, rule, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

/** How much other processes disturbed the windows. */
function foreignLine (suite: { retried: number, medianForeignCores: number, timing: { retries: number }, summary: ReadonlyArray<{ disturbed: number }> }): string {
  const median = Number.isFinite(suite.medianForeignCores) ? `${suite.medianForeignCores.toFixed(2)} cores` : 'unknown (no /proc)'
  const left = suite.summary.reduce((sum, s) => sum + s.disturbed, 0)
  return `CPU used by processes the bench did not start, during the kept windows: median ${median}; ${suite.retried} disturbed windows measured again (up to ${suite.timing.retries} times each); ` +
    `${left} windows still disturbed (more than ${DISTURBED_CORES} of a core) left out of the medians (all windows count where fewer than two are clean).`
}

function clientSection (client: ClientSuiteResult): string {
  const clients = client.clients
  const header = ['scenario', ...clients.map((c) => c.label), 'ours / ceiling', 'same, from CPU time', 'ours / batched ceiling']
  const rows = client.scenarios.map((scenario) => {
    const cell = (id: string): string => {
      const s = client.summary.find((x) => x.scenario === scenario.id && x.client === id)
      if (s === undefined) return '–'
      const errors = s.errors > 0 ? ` ⚠ ${s.errors} errors` : ''
      return id === 'ours' ? `**${formatCount(s.opsPerSec)}**${errors}` : `${formatCount(s.opsPerSec)} (${formatRatio(s.vsOurs)})${errors}`
    }
    const ours = client.summary.find((x) => x.scenario === scenario.id && x.client === 'ours')
    const batched = ours?.meanBatch === undefined ? '–' : `${formatRatio(ours.vsBatched)} (${ours.meanBatch.toFixed(1)} keys a batch)`
    return [scenario.label, ...clients.map((c) => cell(c.id)), formatRatio(ours?.vsCeiling ?? NaN), formatRatio(ours?.cpuVsCeiling ?? NaN), batched]
  })
  const notes = clients.filter((c) => c.note !== undefined).map((c) => `- ${c.label}: ${c.note ?? ''}`)
  const cpuRows = client.scenarios.map((scenario) => [scenario.label, ...clients.map((c) => {
    const s = client.summary.find((x) => x.scenario === scenario.id && x.client === c.id)
    return s === undefined || !Number.isFinite(s.cpuUs) ? '–' : s.cpuUs.toFixed(2)
  })])
  const allocationRows = client.scenarios.map((scenario) => [scenario.label, ...clients.filter((c) => !c.id.startsWith('ceiling')).map((c) => {
    const s = client.summary.find((x) => x.scenario === scenario.id && x.client === c.id)
    return s === undefined || !Number.isFinite(s.allocatedBytes) ? '–' : `${formatCount(s.allocatedBytes)} (${formatCount(s.arrayBufferBytes)})`
  })])
  return [
    `## Client: commands per second (median of ${client.timing.rounds} rounds, ${client.timing.windowMs} ms windows)`,
    '',
    `${client.valueBytes}-byte values, one memcached. Each cell: median ops/s (ratio to ours). A 100-key get counts as one command.`,
    foreignLine(client),
    '',
    table(header, rows, ['l', ...clients.map((): 'r' => 'r'), 'r', 'r', 'r']),
    '',
    ...notes,
    '',
    '### CPU of the client process per command, µs (median; less sensitive to other load on the machine than ops/s)',
    '',
    table(['scenario', ...clients.map((c) => c.label)], cpuRows, ['l', ...clients.map((): 'r' => 'r')]),
    '',
    '### Bytes allocated per command: V8 heap plus ArrayBuffers (of which ArrayBuffers), median over rounds of a run of up to 2,000 commands after each window (an eighth of the window at the client rate, 50 ms at most) with no garbage collection in it',
    '',
    table(['scenario', ...clients.filter((c) => !c.id.startsWith('ceiling')).map((c) => c.label)], allocationRows, ['l', ...clients.filter((c) => !c.id.startsWith('ceiling')).map((): 'r' => 'r')])
  ].join('\n')
}

function httpSection (http: HttpSuiteResult): string {
  const sections: string[] = [
    `## HTTP: requests per second (median of ${http.timing.rounds} rounds, ${http.timing.windowMs} ms windows, ${http.timing.connections.join(' and ')} connections, ${http.timing.sessions} rotating sessions)`,
    '',
    'autocannon in its own process; latency of 2xx responses in microsecond resolution. App CPU µs/req: CPU time of the app process per request (less sensitive to other load on the machine than req/s), and the ratio it implies for a CPU-bound app; load gen. cores: the share of a core autocannon used (near 1.00, the load generator may be the limit).',
    foreignLine(http),
    ''
  ]
  for (const connections of http.timing.connections) for (const route of http.routes) {
    const rows = http.variants.map((variant) => {
      if (variant.skipped !== undefined) return [variant.label, variant.skipped, '', '', '', '', '', '', '']
      const s = http.summary.find((x) => x.route === route.id && x.connections === connections && x.variant === variant.id)
      if (s === undefined) return [variant.label, 'n/a', '', '', '', '', '', '', '']
      const errors = s.errors > 0 ? ` ⚠ ${s.errors} errors` : ''
      return [variant.label, `${formatCount(s.reqPerSec)}${errors}`, formatMs(s.p50), formatMs(s.p99), formatRatio(s.vsOursMemory), formatRatio(s.vsCeiling),
        Number.isFinite(s.serverCpuUs) ? s.serverCpuUs.toFixed(1) : 'n/a', formatRatio(s.cpuVsCeiling), Number.isFinite(s.loadBusy) ? s.loadBusy.toFixed(2) : 'n/a']
    })
    sections.push(`### /${route.id}, ${connections} connections: ${route.label}`, '',
      table(['variant', 'req/s', 'p50 ms', 'p99 ms', 'vs ours + MemoryStore', 'vs no session', 'app CPU µs/req', 'vs no session, from CPU', 'load gen. cores'], rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']), '')
  }
  const notes = http.variants.filter((v) => v.note !== undefined).map((v) => `- ${v.label}: ${v.note ?? ''}`)
  return [...sections, ...notes].join('\n')
}

/** The whole result as Markdown: machine, targets, tables. */
export function renderMarkdown (result: BenchResult): string {
  const m = result.machine
  const parts = [
    `# Benchmark results (${result.mode})`,
    '',
    `- Date: ${result.date}, ${Math.round(result.durationSec)} s, \`${result.command}\``,
    `- Machine: ${machineLine(m)}`,
    `- Pinning: ${m.pinning.description}`,
    `- redis: ${m.redis}`,
    ...result.notes.map((note) => `- ${note}`),
    '',
    '## Targets',
    '',
    '```',
    ...targetLines(result.targets),
    '```',
    ''
  ]
  if (result.client !== undefined) parts.push(clientSection(result.client), '')
  if (result.http !== undefined) parts.push(httpSection(result.http), '')
  parts.push(`Chart: [${result.mode}.svg](${result.mode}.svg) (ratios to the ceiling; latest.svg is the last run of any mode).`, '')
  return parts.join('\n')
}
