// The session plugin through a real twemproxy (nutcracker: md5, ketama,
// auto_eject_hosts) in front of three memcached, `servers: [proxy]`, over
// real HTTP sockets: stale cookies among live ones, and kill -9 of a backend
// under load.
import assert from 'node:assert/strict'
import http from 'node:http'
import { after, test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient } from '../../src/index.js'
import { LoadGenerator, LogRecorder, post, type Outcome } from '../faults/load.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { TwemproxyServer } from '../helpers/twemproxy.js'
import { buildApp, idOf, keyOf, sleep } from './helpers.js'

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })
after(() => { assert.deepEqual(unhandled, [], 'no unhandled rejection in the whole file') })

/** twemproxy's server_retry_timeout, ms: how soon it tries an ejected backend again. */
const TEST = { timeout: 90_000 }

/** How the pool and the app are set up; durations in ms. */
interface Timing {
  /** twemproxy's `timeout` for a backend's reply. */
  backendTimeout: number
  /** twemproxy's `server_retry_timeout`: how soon it tries an ejected backend again. */
  retry: number
  /** The plugin's client `timeout` (the client the plugin creates when undefined). */
  clientTimeout?: number
}

const QUICK: Timing = { backendTimeout: 500, retry: 500 }

interface Setup {
  backends: MemcachedServer[]
  proxy: TwemproxyServer
  app: FastifyInstance
  port: number
  /** Error lines: the plugin logs each 503 with the client's code. */
  logs: LogRecorder
}

async function start (t: TestContext, proxy: boolean, timing: Timing): Promise<Setup> {
  const backends = await Promise.all([MemcachedServer.start(), MemcachedServer.start(), MemcachedServer.start()])
  const twemproxy = await TwemproxyServer.start({ backends: backends.map((backend) => backend.address), timeout: timing.backendTimeout, serverRetryTimeout: timing.retry })
  const logs = new LogRecorder()
  const client = timing.clientTimeout === undefined
    ? undefined
    : new MemcachedClient({ servers: [twemproxy.address], proxy, timeout: timing.clientTimeout, connectTimeout: timing.clientTimeout })
  const where = client === undefined ? { servers: [twemproxy.address], proxy } : { client }
  const app = await buildApp(where, { logger: { level: 'error', stream: logs } })
  t.after(async () => {
    await app.close()
    await client?.close()
    await twemproxy.stop()
    await Promise.all(backends.map(async (backend) => { await backend.kill() }))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { backends, proxy: twemproxy, app, port, logs }
}

async function newSessions (port: number, count: number): Promise<string[]> {
  return await Promise.all(Array.from({ length: count }, async () => {
    const response = await post(port, '/count', undefined)
    assert.equal(response.status, 200)
    return /^sid=([^;]+)/.exec(response.setCookie ?? '')?.[1] as string
  }))
}

/** Half of `stale` logged out through the app, half deleted straight from every pool's memcached, as if expired. */
async function makeStale (port: number, stale: string[], pools: MemcachedServer[][]): Promise<void> {
  for (const cookie of stale.slice(0, stale.length / 2)) assert.equal((await post(port, '/logout', cookie)).status, 200)
  for (const pool of pools) {
    const direct = new MemcachedClient({ servers: pool.map((backend) => backend.address) })
    for (const cookie of stale.slice(stale.length / 2)) assert.equal(await direct.delete(keyOf(idOf(cookie))), true, 'the expired session existed')
    await direct.close()
  }
}

/** 1,000 POSTs at 20 in flight, every 10th with the next of the 100 stale cookies, the others with a live one. */
async function staleCookieLoad (port: number, live: string[], stale: string[]): Promise<{ statuses: Record<string, number>, staleRenewed: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 20 })
  const statuses: Record<string, number> = {}
  let staleRenewed = 0
  let next = 0
  await Promise.all(Array.from({ length: 20 }, async () => {
    for (let j = next++; j < 1000; j = next++) {
      const isStale = j % 10 === 9
      const response = await post(port, '/count', isStale ? stale[(j - 9) / 10] : live[j % 100], agent)
      statuses[response.status] = (statuses[response.status] ?? 0) + 1
      if (isStale && response.status === 200 && response.setCookie !== undefined && (JSON.parse(response.body) as { views: number }).views === 1) staleRenewed++
    }
  }))
  agent.destroy()
  return { statuses, staleRenewed }
}

for (const proxy of [false, true]) {
  test(`session app through twemproxy, 1,000 requests at 20 concurrent, 10% of cookies logged out or expired: 0 x 503 (proxy: ${String(proxy)})`, TEST, async (t) => {
    const { port, backends } = await start(t, proxy, QUICK)
    const live = await newSessions(port, 100)
    const stale = await newSessions(port, 100)
    await makeStale(port, stale, [backends])
    const { statuses, staleRenewed } = await staleCookieLoad(port, live, stale)
    t.diagnostic(`statuses ${JSON.stringify(statuses)}; ${staleRenewed} of 100 stale cookies got a fresh session`)
    assert.deepEqual(statuses, { 200: 1000 })
    assert.equal(staleRenewed, 100, 'every stale cookie got a fresh, empty session')
  })
}

test('replicas: 2 across two twemproxy pools (proxy: true), the same load with stale cookies: 0 x 503, each session in both pools', TEST, async (t) => {
  const pools = await Promise.all([0, 1].map(async () => await Promise.all([MemcachedServer.start(), MemcachedServer.start()])))
  const proxies = await Promise.all(pools.map(async (pool) => await TwemproxyServer.start({ backends: pool.map((backend) => backend.address) })))
  const app = await buildApp({ servers: proxies.map((twemproxy) => twemproxy.address), proxy: true, replicas: 2 })
  t.after(async () => {
    await app.close()
    for (const twemproxy of proxies) await twemproxy.stop()
    await Promise.all(pools.flat().map(async (backend) => { await backend.kill() }))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const live = await newSessions(port, 100)
  const stale = await newSessions(port, 100)
  await makeStale(port, stale, pools)
  const { statuses, staleRenewed } = await staleCookieLoad(port, live, stale)
  t.diagnostic(`statuses ${JSON.stringify(statuses)}; ${staleRenewed} of 100 stale cookies got a fresh session`)
  assert.deepEqual(statuses, { 200: 1000 })
  assert.equal(staleRenewed, 100, 'every stale cookie got a fresh, empty session')
  for (const pool of pools) {
    const direct = new MemcachedClient({ servers: pool.map((backend) => backend.address) })
    const found = await direct.getMulti(live.map((cookie) => keyOf(idOf(cookie))))
    await direct.close()
    assert.equal(found.size, 100, 'every live session has a copy in this pool')
  }
})

// The plugin's loads are gets + touch pairs, never a multi-key get, so it
// does as well without proxy: true; a client's own coalesced gets do not
// (see test/protocol/twemproxy.test.ts).
for (const proxy of [false, true]) {
  test(`kill -9 of one backend behind twemproxy under load (2,000 requests, 20 concurrent, proxy: ${String(proxy)}): under 2% 503, and recovery after the restart`, TEST, async (t) => {
    // The outage (1 s) is shorter than twemproxy's retry, and every timeout is
    // generous: what is counted is what the dead backend costs, not how a
    // loaded CI machine schedules three memcached, a proxy and the app.
    const timing: Timing = { backendTimeout: 2000, retry: 1500, clientTimeout: 3000 }
    const { port, backends, logs } = await start(t, proxy, timing)
    const cookies = await newSessions(port, 100)
    const load = new LoadGenerator({ port, cookies, total: 2000, concurrency: 20, paceMs: 10 })
    const running = load.run()
    while (load.issued < 500) await sleep(5)
    const victim = backends[0] as MemcachedServer
    const killedAt = performance.now()
    await victim.kill()
    await sleep(1000)
    await victim.restart()
    const restartedAt = performance.now()
    const results: Outcome[] = await running
    // The dead backend's sessions are lost: their next request starts a fresh one.
    const renewed = results.filter((result) => result.start > killedAt && result.renewed).length
    assert.ok(renewed > 0, 'the kill happened under load')
    const failed = results.filter((result) => result.status === 503)
    const other = results.filter((result) => result.status !== 200 && result.status !== 503)
    const codes = new Map<string, number>()
    for (const entry of logs.atLeast(50)) if (entry.session !== undefined) codes.set(entry.err?.code ?? '?', (codes.get(entry.err?.code ?? '?') ?? 0) + 1)
    t.diagnostic(`${results.length} requests, ${failed.length} x 503 (${(failed.length / results.length * 100).toFixed(2)}%): ${JSON.stringify(Object.fromEntries(codes))}; ${renewed} sessions lost with the backend and started afresh`)
    assert.deepEqual(other.map((result) => result.status), [], 'only 200 and 503')
    assert.ok(failed.length < results.length * 0.02, `${failed.length} of ${results.length} answered 503`)

    // After the restart and twemproxy's retry, every session works again.
    await sleep(timing.retry + 500)
    const after = await Promise.all(cookies.slice(0, 50).map(async (cookie) => await post(port, '/count', cookie)))
    assert.deepEqual(after.map((response) => response.status).filter((status) => status !== 200), [], 'every request after the recovery succeeds')
    t.diagnostic(`recovery checked ${Math.round(performance.now() - restartedAt)} ms after the restart`)
  })
}
