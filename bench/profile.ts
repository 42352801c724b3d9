/**
 * Profiles one bench scenario with the V8 CPU profiler and prints where the
 * time goes (self time by function). Writes the .cpuprofile next to the
 * results (git-ignored) for Chrome DevTools or speedscope.
 *
 *   node build/bench/profile.js client set 128 [--no-coalesce] [--seconds=5]
 *   node build/bench/profile.js client get 128 --floor | --contract-floor   (coalesced-floor.ts, to compare)
 *   node build/bench/profile.js http ours-memory rw [--seconds=5] [--connections=32]
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import inspector from 'node:inspector'
import path from 'node:path'
import { benchValue, keyAt } from './client/workload.js'
import { coalescedFloorDriver, ours } from './client/drivers.js'
import { choosePinning } from './lib/machine.js'
import { killAll, pinSelf, spawnPinned, stopChild } from './lib/processes.js'
import { startMemcached } from './lib/servers.js'
import { progress } from './lib/stats.js'
import { MemcachedClient } from '../src/index.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  hitCount?: number
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
}

const OUT_DIR = path.resolve(__dirname, '../../bench/results')

/** Self time per function, largest first, as printable lines. */
export function topFunctions (profile: CpuProfile, limit = 30): string[] {
  const total = profile.nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0)
  const byFunction = new Map<string, number>()
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame
    const file = url === '' ? '' : ` ${url.replace(/^file:\/\//, '').replace(/^.*\/(build|node_modules)\//, '$1/')}:${lineNumber + 1}`
    const name = `${functionName === '' ? '(anonymous)' : functionName}${file}`
    byFunction.set(name, (byFunction.get(name) ?? 0) + (node.hitCount ?? 0))
  }
  return [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, limit)
    .map(([name, hits]) => `${(100 * hits / total).toFixed(1).padStart(5)}%  ${name}`)
}

async function post<T> (session: inspector.Session, method: string, params?: object): Promise<T> {
  return await new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (error, result) => { if (error !== null) reject(error); else resolve(result as T) })
  })
}

async function profileClient (op: string, inFlight: number, coalesce: boolean, seconds: number, floor?: 'floor' | 'contract'): Promise<void> {
  const pinning = choosePinning()
  if (pinning.measured !== undefined) pinSelf(pinning.measured)
  const memcached = await startMemcached(pinning.load)
  const value = benchValue()
  const keys = Array.from({ length: 1024 }, (_, i) => `bench:get:${String(i).padStart(4, '0')}`)
  const preload = new MemcachedClient({ servers: [memcached.address] })
  await Promise.all(keys.map(async (key) => await preload.set(key, value)))
  await preload.close()
  const driver = floor === undefined ? ours(memcached.address, coalesce) : await coalescedFloorDriver(memcached.address, floor === 'contract')
  const multi = keys.slice(0, 100)
  const run = op === 'set'
    ? (loop: number, n: number) => driver.set(keys[keyAt(loop, n, inFlight)] as string, value)
    : op === 'mget'
      ? () => driver.getMulti(multi)
      : (loop: number, n: number) => driver.get(keys[keyAt(loop, n, inFlight)] as string)
  const session = new inspector.Session()
  session.connect()
  await post(session, 'Profiler.enable')
  await post(session, 'Profiler.setSamplingInterval', { interval: 100 })
  let stop = false
  let done = 0
  const loops = Array.from({ length: inFlight }, async (_, id) => {
    for (let n = 0; !stop && n < 1e9; n++) { await run(id, n); done++ }
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  await post(session, 'Profiler.start')
  const before = done
  const started = Date.now()
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  const { profile } = await post<{ profile: CpuProfile }>(session, 'Profiler.stop')
  const rate = (done - before) * 1000 / (Date.now() - started)
  stop = true
  await Promise.all(loops)
  await driver.close()
  await memcached.stop()
  session.disconnect()
  const who = floor === undefined ? (coalesce ? '' : '-nocoalesce') : `-${floor}`
  const title = floor === undefined ? (coalesce ? '' : ', coalesceGets: false') : `, the ${floor === 'floor' ? 'coalesced' : 'contract'} floor`
  report(profile, `client-${op}-${inFlight}${who}.cpuprofile`, `${op}, ${inFlight} in flight${title}: ${Math.round(rate).toLocaleString('en-US')} ops/s while profiling`)
}

async function profileHttp (variant: string, route: string, seconds: number, connections: number): Promise<void> {
  const pinning = choosePinning()
  const memcached = await startMemcached(pinning.load)
  const dir = path.join(OUT_DIR, `.prof-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  const server = spawnPinned(pinning.measured, process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=100', path.join(__dirname, 'http/server.js'), variant, memcached.address, '-'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const [ready] = await new Promise<[{ port?: number, message?: string }]>((resolve) => server.once('message', (m: { port?: number }) => resolve([m])))
  if (ready.port === undefined) throw new Error(ready.message ?? 'server failed')
  const cookies: string[] = []
  for (let i = 0; i < 100; i++) {
    const response = await fetch(`http://127.0.0.1:${ready.port}/rw`)
    await response.arrayBuffer()
    const cookie = response.headers.getSetCookie()[0]
    cookies.push(cookie === undefined ? 'x=y' : cookie.split(';', 1)[0] as string)
  }
  const load = spawnPinned(pinning.load, process.execPath, [path.join(__dirname, 'http/load.js')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await new Promise((resolve) => load.once('message', resolve))
  const result = await new Promise<{ reqPerSec: number }>((resolve) => {
    load.on('message', (m: { type: string, reqPerSec: number }) => { if (m.type === 'result') resolve(m) })
    load.send({ type: 'run', id: 1, url: `http://127.0.0.1:${ready.port}/${route}`, cookies, connections, warmupMs: 500, windowMs: seconds * 1000 })
  })
  await stopChild(load)
  // SIGTERM closes the app; the profile is written on a clean exit.
  await stopChild(server, 10_000)
  await memcached.stop()
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error('no profile written')
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile
  report(profile, `http-${variant}-${route}-${connections}.cpuprofile`, `${variant} /${route}, ${connections} connections: ${Math.round(result.reqPerSec).toLocaleString('en-US')} req/s (profiled, whole server run)`)
}

function report (profile: CpuProfile, name: string, title: string): void {
  mkdirSync(OUT_DIR, { recursive: true })
  const file = path.join(OUT_DIR, name)
  writeFileSync(file, JSON.stringify(profile))
  process.stdout.write(`${title}\nprofile: ${path.relative(process.cwd(), file)}\nself time by function:\n${topFunctions(profile).join('\n')}\n`)
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const seconds = Number(args.find((a) => a.startsWith('--seconds='))?.slice(10) ?? 5)
  const positional = args.filter((a) => !a.startsWith('--'))
  if (positional[0] === 'client') {
    const floor = args.includes('--floor') ? 'floor' : args.includes('--contract-floor') ? 'contract' : undefined
    await profileClient(positional[1] ?? 'get', Number(positional[2] ?? 128), !args.includes('--no-coalesce'), seconds, floor)
  } else if (positional[0] === 'http') {
    await profileHttp(positional[1] ?? 'ours-memory', positional[2] ?? 'rw', seconds, Number(args.find((a) => a.startsWith('--connections='))?.slice(14) ?? 32))
  } else {
    throw new Error('usage: profile.js client <get|set|mget> <inFlight> [--no-coalesce | --floor | --contract-floor] | http <variant> <rw|ro> [--seconds=N] [--connections=N]')
  }
}

main().catch((error: unknown) => {
  progress(`profile failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  killAll()
  process.exitCode = 1
})
