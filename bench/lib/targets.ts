/**
 * The performance targets, checked against the medians and printed
 * as PASS/MISS lines. Never part of the unit tests: timing is the bench's
 * business.
 */
import type { ClientSuiteResult, ClientSummary } from '../client/suite.js'
import type { HttpSuiteResult, HttpSummary } from '../http/suite.js'
import type { VariantId } from '../http/variants.js'
import { formatRatio, ratio } from './stats.js'

export interface TargetCheck {
  id: string
  description: string
  /** The measured ratio. */
  measured: number
  /** The ratio it must reach; NaN for a figure shown for context (INFO). */
  threshold: number
  status: 'PASS' | 'MISS' | 'N/A' | 'INFO'
  /**
   * The same ratio from CPU time per command or request: what the rates
   * would show on an idle machine if the measured side is CPU-bound. For
   * reading a noisy run; PASS/MISS is decided on the rates.
   */
  cpuBased: number
}

const PEERS = ['memjs', 'memcached', 'memcache-client']

function check (id: string, description: string, measured: number, threshold: number, cpuBased: number): TargetCheck {
  const status = !Number.isFinite(measured) ? 'N/A' : Number.isNaN(threshold) ? 'INFO' : measured >= threshold ? 'PASS' : 'MISS'
  return { id, description, measured, threshold, status, cpuBased }
}

export function clientTargets (client: ClientSuiteResult): TargetCheck[] {
  const find = (scenario: string, id: string): ClientSummary | undefined => client.summary.find((s) => s.scenario === scenario && s.client === id)
  const ops = (scenario: string, id: string): number | undefined => find(scenario, id)?.opsPerSec
  const cpu = (scenario: string, id: string): number | undefined => find(scenario, id)?.cpuUs
  const vsCeiling = (scenario: string): number => ratio(ops(scenario, 'ours'), ops(scenario, 'ceiling'))
  const cpuVsCeiling = (scenario: string): number => find(scenario, 'ours')?.cpuVsCeiling ?? NaN
  const checks: TargetCheck[] = []
  for (const inFlight of [1, 128, 1024]) {
    checks.push(check(`client-get-${inFlight}`, `client get, ${inFlight} in flight: ours >= 0.9x raw-socket ceiling`, vsCeiling(`get-${inFlight}`), 0.9, cpuVsCeiling(`get-${inFlight}`)))
  }
  for (const inFlight of [1, 128, 1024]) {
    checks.push(check(`client-set-${inFlight}`, `client set, ${inFlight} in flight: ours >= 0.8x raw-socket ceiling`, vsCeiling(`set-${inFlight}`), 0.8, cpuVsCeiling(`set-${inFlight}`)))
  }
  for (const inFlight of [1, 16]) {
    checks.push(check(`client-mget-${inFlight}`, `client 100-key get, ${inFlight} in flight: ours >= 0.8x raw-socket ceiling`, vsCeiling(`mget-${inFlight}`), 0.8, cpuVsCeiling(`mget-${inFlight}`)))
  }
  for (const inFlight of [128, 1024]) {
    const scenario = `get-${inFlight}`
    const peers = PEERS.map((peer) => ({ peer, value: ops(scenario, peer) ?? NaN })).filter((p) => Number.isFinite(p.value))
    const fastest = peers.reduce<{ peer: string, value: number } | undefined>((best, p) => best === undefined || p.value > best.value ? p : best, undefined)
    checks.push(check(`client-coalesce-${inFlight}`, `client get, ${inFlight} in flight, coalescing: ours >= 2x the fastest peer (${fastest?.peer ?? 'none'})`,
      ratio(ops(scenario, 'ours'), fastest?.value), 2, fastest === undefined ? NaN : ratio(cpu(scenario, fastest.peer), cpu(scenario, 'ours'))))
  }
  return checks
}

export function httpTargets (http: HttpSuiteResult): TargetCheck[] {
  const find = (variant: VariantId): HttpSummary | undefined => http.summary.find((s) => s.route === 'rw' && s.variant === variant)
  const rate = (variant: VariantId): number | undefined => find(variant)?.reqPerSec
  const cpu = (variant: VariantId): number | undefined => find(variant)?.serverCpuUs
  const pair = (a: VariantId, b: VariantId): [number, number] => [ratio(rate(a), rate(b)), ratio(cpu(b), cpu(a))]
  const target = (id: string, description: string, a: VariantId, b: VariantId, threshold: number): TargetCheck => {
    const [measured, cpuBased] = pair(a, b)
    return check(id, description, measured, threshold, cpuBased)
  }
  return [
    target('http-vs-fastify-session-memcached', 'HTTP read-write: ours + memcached >= 2x @fastify/session + connect-memcached', 'ours-memcached', 'fastify-session-memcached', 2),
    target('http-vs-fastify-session-memory', 'HTTP read-write: ours + memcached >= 1.2x @fastify/session + its MemoryStore', 'ours-memcached', 'fastify-session-memory', 1.2),
    target('http-vs-ours-memory', 'HTTP read-write: ours + memcached >= 0.85x ours + MemoryStore', 'ours-memcached', 'ours-memory', 0.85),
    target('http-memory-vs-ceiling', 'HTTP read-write: ours + MemoryStore >= 0.6x no session', 'ours-memory', 'none', 0.6),
    // Ours: no memcached store can beat the floor, so ours must come close to it.
    target('http-vs-floor', 'HTTP read-write: ours + memcached >= 0.8x the round-trip floor (MemoryStore + two bare memcached round trips)', 'ours-memcached', 'floor-memcached', 0.8),
    target('http-floor-vs-ours-memory', 'HTTP read-write: the round-trip floor vs ours + MemoryStore, the most any memcached store reaches on this machine', 'floor-memcached', 'ours-memory', NaN)
  ]
}

/** `PASS  client get, 1 in flight: ... — 0.93x (target 0.90x)`. */
export function targetLine (target: TargetCheck): string {
  if (target.status === 'INFO') return `INFO  ${target.description}: ${formatRatio(target.measured)} (from CPU time: ${formatRatio(target.cpuBased)})`
  return `${target.status.padEnd(4)}  ${target.description}: ${formatRatio(target.measured)} (target ${formatRatio(target.threshold)}; from CPU time: ${formatRatio(target.cpuBased)})`
}
