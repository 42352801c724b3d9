/**
 * A horizontal bar chart of every variant's ratio to its ceiling, as plain
 * SVG (no plotting dependency): one group of bars per client scenario and per
 * HTTP route, labels on the left, values at the bar ends, a line at 1.0x.
 */
import { CONTRACT_FLOOR_ID, TWIN_ID } from '../client/workload.js'
import { TWIN_VARIANT } from '../http/variants.js'
import { machineLine } from './machine.js'
import type { BenchResult } from './report.js'

interface Bar {
  label: string
  value: number
  color: string
  /** Shown instead of a bar. */
  text?: string
}

interface Group {
  title: string
  bars: Bar[]
}

const COLORS: Record<string, string> = {
  ours: '#1f6feb',
  'ours-nocoalesce': '#6ea8fe',
  'ours-memcached': '#1f6feb',
  'ours-memory': '#6ea8fe',
  memjs: '#d97706',
  memcached: '#16a34a',
  'memcache-client': '#9333ea',
  'fastify-session-memcached': '#16a34a',
  'fastify-session-memory': '#d97706',
  'secure-session': '#9333ea',
  'fastify-session-redis': '#dc2626'
}

const WIDTH = 960
const LABEL_WIDTH = 330
const BAR_AREA = 500
const ROW = 20
const GROUP_GAP = 14
const SECTION_GAP = 34

function escape (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

function clientGroups (result: BenchResult): Group[] {
  const client = result.client
  if (client === undefined) return []
  return client.scenarios.map((scenario) => ({
    title: scenario.label,
    // The A/A twin (noise) and the contract floor (no replay of its batches to hold it to) are in the tables only.
    bars: client.clients.filter((c) => !c.id.startsWith('ceiling') && c.id !== TWIN_ID && c.id !== CONTRACT_FLOOR_ID).flatMap((c) => {
      const s = client.summary.find((x) => x.scenario === scenario.id && x.client === c.id)
      // Ours' coalesced gets are held to the ceiling that sends the same batches.
      const value = s !== undefined && Number.isFinite(s.vsBatched) && c.id === 'ours' ? s.vsBatched : s?.vsCeiling ?? NaN
      return s === undefined || !Number.isFinite(value) ? [] : [{ label: c.label, value, color: COLORS[c.id] ?? '#666' }]
    })
  }))
}

function httpGroups (result: BenchResult): Group[] {
  const http = result.http
  if (http === undefined) return []
  return http.timing.connections.flatMap((connections) => http.routes.map((route) => ({
    title: `/${route.id}, ${connections} connections: ${route.label}`,
    bars: http.variants.filter((v) => v.id !== 'none' && v.id !== TWIN_VARIANT).flatMap((v): Bar[] => {
      if (v.skipped !== undefined) return [{ label: v.label, value: NaN, color: '#999', text: v.skipped }]
      const s = http.summary.find((x) => x.route === route.id && x.connections === connections && x.variant === v.id)
      return s === undefined ? [] : [{ label: v.label, value: s.vsCeiling, color: COLORS[v.id] ?? '#666' }]
    })
  })))
}

/** The chart for `result`, as an SVG document. */
export function renderSvg (result: BenchResult): string {
  const sections = [
    { title: 'Client: commands/s relative to the raw-socket ceiling (1.0x)', groups: clientGroups(result) },
    { title: 'HTTP: requests/s relative to no session (1.0x)', groups: httpGroups(result) }
  ].filter((section) => section.groups.length > 0)
  const values = sections.flatMap((s) => s.groups.flatMap((g) => g.bars.map((b) => b.value))).filter(Number.isFinite)
  const scaleMax = Math.max(1.2, Math.ceil(Math.max(0, ...values) * 2) / 2)
  const x = (value: number): number => LABEL_WIDTH + (Math.max(0, value) / scaleMax) * BAR_AREA
  const out: string[] = []
  let y = 56
  for (const section of sections) {
    out.push(`<text x="16" y="${y}" class="section">${escape(section.title)}</text>`)
    y += 14
    const top = y
    // Bars go after the grid lines, so they are drawn on top of them.
    const body: string[] = []
    for (const group of section.groups) {
      y += 18
      body.push(`<text x="16" y="${y - 4}" class="group">${escape(group.title)}</text>`)
      for (const bar of group.bars) {
        const mid = y + ROW / 2
        body.push(`<text x="${LABEL_WIDTH - 8}" y="${mid + 4}" class="label" text-anchor="end">${escape(bar.label)}</text>`)
        if (bar.text !== undefined || !Number.isFinite(bar.value)) {
          body.push(`<text x="${LABEL_WIDTH + 4}" y="${mid + 4}" class="note">${escape(bar.text ?? 'n/a')}</text>`)
        } else {
          const width = Math.max(1, x(bar.value) - LABEL_WIDTH)
          body.push(`<rect x="${LABEL_WIDTH}" y="${y + 3}" width="${width.toFixed(1)}" height="${ROW - 6}" fill="${bar.color}"/>`)
          body.push(`<text x="${(LABEL_WIDTH + width + 6).toFixed(1)}" y="${mid + 4}" class="value">${bar.value.toFixed(2)}x</text>`)
        }
        y += ROW
      }
      y += GROUP_GAP
    }
    // Grid lines and ticks, under the bars.
    const ticks: string[] = []
    for (let tick = 0; tick <= scaleMax + 1e-9; tick += 0.5) {
      const tx = x(tick).toFixed(1)
      ticks.push(`<line x1="${tx}" y1="${top}" x2="${tx}" y2="${y - GROUP_GAP}" class="${tick === 1 ? 'one' : 'grid'}"/>`)
      ticks.push(`<text x="${tx}" y="${y - GROUP_GAP + 14}" class="tick" text-anchor="middle">${tick.toFixed(1)}x</text>`)
    }
    out.push(...ticks, ...body)
    y += SECTION_GAP
  }
  const m = result.machine
  const footer = [
    `${result.mode} run, ${result.date}; ${machineLine(m)}`,
    m.pinning.description
  ]
  for (const line of footer) {
    out.push(`<text x="16" y="${y}" class="foot">${escape(line)}</text>`)
    y += 16
  }
  const height = y + 8
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    '<style>',
    '.title{font-size:18px;font-weight:bold}.section{font-size:15px;font-weight:bold}.group{font-size:12px;font-weight:bold;fill:#333}',
    '.label{font-size:12px;fill:#222}.value{font-size:11px;fill:#222;paint-order:stroke;stroke:#fff;stroke-width:3px}.note{font-size:12px;fill:#777;font-style:italic}',
    '.tick{font-size:10px;fill:#666}.grid{stroke:#e5e5e5}.one{stroke:#111;stroke-dasharray:4 3}.foot{font-size:11px;fill:#555}',
    '</style>',
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    '<text x="16" y="28" class="title">fastify-memcached-session benchmark: ratio to the ceiling (higher is better)</text>',
    ...out,
    '</svg>',
    ''
  ].join('\n')
}
