/**
 * The performance targets, checked against the medians and printed
 * as PASS/MISS lines. Never part of the unit tests: timing is the bench's
 * business.
 */
import type { ClientSuiteResult } from '../client/suite.js'
import type { HttpSuiteResult } from '../http/suite.js'
import type { VariantId } from '../http/variants.js'
import { formatRatio, ratio } from './stats.js'

export interface TargetCheck {
  id: string
  description: string
  /** The measured ratio. */
  measured: number
  /** The ratio it must reach. */
  threshold: number
  status: 'PASS' | 'MISS' | 'N/A'
}

const PEERS = ['memjs', 'memcached', 'memcache-client']

function check (id: string, description: string, measured: number, threshold: number): TargetCheck {
  const status = Number.isFinite(measured) ? (measured >= threshold ? 'PASS' : 'MISS') : 'N/A'
  return { id, description, measured, threshold, status }
}

export function clientTargets (client: ClientSuiteResult): TargetCheck[] {
  const ops = (scenario: string, id: string): number | undefined =>
    client.summary.find((s) => s.scenario === scenario && s.client === id)?.opsPerSec
  const vsCeiling = (scenario: string): number => ratio(ops(scenario, 'ours'), ops(scenario, 'ceiling'))
  const checks: TargetCheck[] = []
  for (const inFlight of [1, 128, 1024]) {
    checks.push(check(`client-get-${inFlight}`, `client get, ${inFlight} in flight: ours >= 0.9x raw-socket ceiling`, vsCeiling(`get-${inFlight}`), 0.9))
  }
  for (const inFlight of [1, 128, 1024]) {
    checks.push(check(`client-set-${inFlight}`, `client set, ${inFlight} in flight: ours >= 0.8x raw-socket ceiling`, vsCeiling(`set-${inFlight}`), 0.8))
  }
  for (const inFlight of [1, 16]) {
    checks.push(check(`client-mget-${inFlight}`, `client 100-key get, ${inFlight} in flight: ours >= 0.8x raw-socket ceiling`, vsCeiling(`mget-${inFlight}`), 0.8))
  }
  for (const inFlight of [128, 1024]) {
    const scenario = `get-${inFlight}`
    const peers = PEERS.map((peer) => ({ peer, value: ops(scenario, peer) ?? NaN })).filter((p) => Number.isFinite(p.value))
    const fastest = peers.reduce<{ peer: string, value: number } | undefined>((best, p) => best === undefined || p.value > best.value ? p : best, undefined)
    checks.push(check(`client-coalesce-${inFlight}`, `client get, ${inFlight} in flight, coalescing: ours >= 2x the fastest peer (${fastest?.peer ?? 'none'})`,
      ratio(ops(scenario, 'ours'), fastest?.value), 2))
  }
  return checks
}

export function httpTargets (http: HttpSuiteResult): TargetCheck[] {
  const rate = (variant: VariantId): number | undefined =>
    http.summary.find((s) => s.route === 'rw' && s.variant === variant)?.reqPerSec
  return [
    check('http-vs-fastify-session-memcached', 'HTTP read-write: ours + memcached >= 2x @fastify/session + connect-memcached',
      ratio(rate('ours-memcached'), rate('fastify-session-memcached')), 2),
    check('http-vs-fastify-session-memory', 'HTTP read-write: ours + memcached >= 1.2x @fastify/session + its MemoryStore',
      ratio(rate('ours-memcached'), rate('fastify-session-memory')), 1.2),
    check('http-vs-ours-memory', 'HTTP read-write: ours + memcached >= 0.85x ours + MemoryStore',
      ratio(rate('ours-memcached'), rate('ours-memory')), 0.85),
    check('http-memory-vs-ceiling', 'HTTP read-write: ours + MemoryStore >= 0.6x no session',
      ratio(rate('ours-memory'), rate('none')), 0.6)
  ]
}

/** `PASS  client get, 1 in flight: ... — 0.93x (target 0.90x)`. */
export function targetLine (target: TargetCheck): string {
  return `${target.status.padEnd(4)}  ${target.description}: ${formatRatio(target.measured)} (target ${formatRatio(target.threshold)})`
}
