/**
 * An A/B of two HTTP variants in alternating processes: what bench/ab.ts
 * does for clients, for the HTTP section. Each pair starts A's app and B's
 * app one after the other, each in a fresh process on the measured core,
 * with its own sessions, and drives it with the load generator on the load
 * core; the order flips every pair. Per side it reads the CPU time per
 * request of the app, of memcached and of the load generator: memcached and
 * the load generator share the load core, so a variant whose requests cost
 * them more is slower even at the same app CPU.
 *
 *   node build/bench/http/ab.js rw 100 [--a=ours-memcached] [--b=floor-memcached-work] [--pairs=6] [--seconds=3] [--warmup=1]
 *   node build/bench/http/ab.js rw 100 --b=ours-memcached --b-build=/tmp/old/build
 *
 * `--a-build` / `--b-build`: the `build/` directory of another checkout
 * (built with `npx tsc -p tsconfig.json`, its `node_modules` linked in); that
 * side runs that build's app (its bench/http/server.js), for a before/after
 * of one change. Variants that need redis are the suite's only.
 */
import path from 'node:path'
import { processCpuSeconds } from '../lib/cpu.js'
import { choosePinning } from '../lib/machine.js'
import { killAll, stopChild } from '../lib/processes.js'
import { startMemcached, type ServerProcess } from '../lib/servers.js'
import { alternatePairs, formatPairs, option } from '../lib/pairs.js'
import { formatCount, formatRatio, progress } from '../lib/stats.js'
import { LoadGenerator, createSessions, startServer } from './children.js'
import { VARIANTS, type Variant } from './variants.js'
import type { Route } from './suite.js'

/** One side: a variant, and the server script of the build that runs it. */
interface Side {
  variant: Variant
  server: string
}

/** What one side measured. */
interface Measured {
  rate: number
  /** CPU time per request, microseconds: the app, memcached, the load generator. */
  appUs: number
  memcachedUs: number
  loadUs: number
  errors: number
}

interface Settings {
  route: Route
  connections: number
  warmupMs: number
  windowMs: number
  sessions: number
}

async function measure (side: Side, memcached: ServerProcess, load: LoadGenerator, settings: Settings, core: number | undefined): Promise<Measured> {
  const server = await startServer(side.variant, { memcached: memcached.address, redis: undefined }, core, side.server)
  try {
    const cookies = await createSessions(server, settings.sessions)
    const cpu = (): number[] => [processCpuSeconds(server.child.pid), processCpuSeconds(memcached.pid), processCpuSeconds(load.pid)]
    // CPU over the window only: a fresh app compiles its code during the
    // warmup, and a heavier stack takes longer, which would count against it.
    let windowStart: number[] | undefined
    const timer = setTimeout(() => { windowStart = cpu() }, settings.warmupMs)
    const result = await load.run({ url: `http://127.0.0.1:${server.port}/${settings.route}`, cookies, connections: settings.connections, warmupMs: settings.warmupMs, windowMs: settings.windowMs })
    clearTimeout(timer)
    if (result.error !== undefined || windowStart === undefined) throw new Error(`${side.variant.id}: ${result.error ?? 'the load ended within its warmup'}`)
    const start = windowStart
    const [app, mc, gen] = cpu().map((after, i) => (after - (start[i] as number)) * 1e6 / Math.max(1, result.requests)) as [number, number, number]
    return { rate: result.reqPerSec, appUs: app, memcachedUs: mc, loadUs: gen, errors: result.non2xx + result.errors + result.timeouts }
  } finally {
    await stopChild(server.child)
  }
}

function side (args: readonly string[], which: 'a' | 'b', fallback: string): Side {
  const id = option(args, which) ?? fallback
  const variant = VARIANTS.find((candidate) => candidate.id === id)
  if (variant === undefined) throw new Error(`--${which}: unknown variant ${id} (one of ${VARIANTS.map((v) => v.id).join(', ')})`)
  if (variant.needs === 'redis') throw new Error(`--${which}: ${id} needs redis; compare it in the suite (npm run bench -- --only=http)`)
  const build = option(args, `${which}-build`)
  return { variant, server: path.join(build === undefined ? path.resolve(__dirname, '..', '..') : path.resolve(build), 'bench', 'http', 'server.js') }
}

function describe (ofSide: Side): string {
  return `${ofSide.variant.id} (${path.relative(process.cwd(), ofSide.server)})`
}

function figures (m: Measured): string {
  return `${formatCount(m.rate)}/s, µs per request: app ${m.appUs.toFixed(1)}, memcached ${m.memcachedUs.toFixed(1)}, load ${m.loadUs.toFixed(1)}${m.errors > 0 ? `, ${m.errors} errors` : ''}`
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const [route, connectionsText] = args.filter((arg) => !arg.startsWith('--'))
  if ((route !== 'rw' && route !== 'ro') || connectionsText === undefined) {
    throw new Error('usage: ab.js <rw|ro> <connections> [--a=ours-memcached] [--b=floor-memcached-work] [--a-build=DIR] [--b-build=DIR] [--pairs=6] [--seconds=3] [--warmup=1]')
  }
  const a = side(args, 'a', 'ours-memcached')
  const b = side(args, 'b', 'floor-memcached-work')
  const pairs = Number(option(args, 'pairs') ?? 6)
  const settings: Settings = { route, connections: Number(connectionsText), warmupMs: Number(option(args, 'warmup') ?? 1) * 1000, windowMs: Number(option(args, 'seconds') ?? 3) * 1000, sessions: 100 }
  const pinning = choosePinning()
  const memcached = await startMemcached(pinning.load)
  const load = await LoadGenerator.start(pinning.load)
  try {
    const ratios = { rate: [] as number[], app: [] as number[], loadCore: [] as number[] }
    const measureSide = async (ofSide: Side): Promise<Measured> => await measure(ofSide, memcached, load, settings, pinning.measured)
    await alternatePairs(pairs, async () => await measureSide(a), async () => await measureSide(b), (ofA, ofB, pair) => {
      ratios.rate.push(ofA.rate / ofB.rate)
      ratios.app.push(ofA.appUs / ofB.appUs)
      ratios.loadCore.push((ofA.memcachedUs + ofA.loadUs) / (ofB.memcachedUs + ofB.loadUs))
      progress(`pair ${pair + 1}: A ${figures(ofA)} | B ${figures(ofB)} | rate ${formatRatio(ofA.rate / ofB.rate)}`)
    })
    process.stdout.write(`/${route}, ${settings.connections} connections, A = ${describe(a)}, B = ${describe(b)}, ${pairs} pairs of ${settings.windowMs / 1000} s:\n`)
    process.stdout.write(`  rate A/B: ${formatPairs(ratios.rate)}\n`)
    process.stdout.write(`  app CPU per request A/B: ${formatPairs(ratios.app)}\n`)
    process.stdout.write(`  load core (memcached + load generator) CPU per request A/B: ${formatPairs(ratios.loadCore)}\n`)
  } finally {
    await load.stop()
    await memcached.stop()
  }
}

main().catch((error: unknown) => {
  killAll()
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
})
