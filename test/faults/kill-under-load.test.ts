// kill -9 of a memcached under HTTP load (5,000 requests over 100 sessions,
// 50 at a time, on real sockets): every answer is 200 or 503, none takes
// longer than the client timeout plus 500 ms, nothing is logged above what
// the event deserves, and the sessions work again within retryDelay plus one
// second of the restart. With replicas: 2 on three servers, no request fails
// and no write is lost.
import { after, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient, type MemcachedSessionOptions } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { buildApp, sleep } from '../plugin/helpers.js'
import { LoadGenerator, LogRecorder, post, type Outcome } from './load.js'

const TIMEOUT = 500
const RETRY_DELAY = 300
const SESSIONS = 100
const TOTAL = 5000
const CONCURRENCY = 50
// 100 requests per worker, one every ~40 ms: about 4 s of load, so the
// kill, the outage and the recovery all happen while it runs.
const PACE_MS = 40
const KILL_AFTER = 1000
const OUTAGE_MS = 1000

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })
after(() => { assert.deepEqual(unhandled, [], 'no unhandled rejection in the whole file') })

interface Run {
  results: Outcome[]
  logs: LogRecorder
  /** performance.now() ms of the kill and of the restarted server listening again. */
  killedAt: number
  restartedAt: number
  app: FastifyInstance
  port: number
  cookies: string[]
}

async function start (t: TestContext, servers: MemcachedServer[], options: Partial<MemcachedSessionOptions>): Promise<Omit<Run, 'results' | 'killedAt' | 'restartedAt'>> {
  const logs = new LogRecorder()
  const client = new MemcachedClient({ servers: servers.map((server) => server.address), timeout: TIMEOUT, connectTimeout: TIMEOUT, retryDelay: RETRY_DELAY })
  const app = await buildApp({ client, ...options }, { logger: { level: 'debug', stream: logs } })
  t.after(async () => {
    await app.close()
    await client.close()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const cookies = await Promise.all(Array.from({ length: SESSIONS }, async () => {
    const response = await post(port, '/count', undefined)
    assert.equal(response.status, 200)
    return /^sid=([^;]+)/.exec(response.setCookie ?? '')?.[1] as string
  }))
  return { logs, app, port, cookies }
}

/** Runs the load, kills `victim` once KILL_AFTER requests went out, restarts it OUTAGE_MS later. */
async function killUnderLoad (setup: Omit<Run, 'results' | 'killedAt' | 'restartedAt'>, victim: MemcachedServer): Promise<Run> {
  const load = new LoadGenerator({ port: setup.port, cookies: setup.cookies, total: TOTAL, concurrency: CONCURRENCY, paceMs: PACE_MS })
  const running = load.run()
  while (load.issued < KILL_AFTER) await sleep(5)
  const killedAt = performance.now()
  await victim.kill()
  await sleep(OUTAGE_MS)
  await victim.restart()
  const restartedAt = performance.now()
  const results = await running
  assert.equal(results.length, TOTAL)
  assert.ok(results.some((result) => result.start > restartedAt + RETRY_DELAY + 1000), 'the load outlasted the recovery window')
  return { ...setup, results, killedAt, restartedAt }
}

function checkContract (t: TestContext, run: Run): void {
  const statuses = new Set(run.results.map((result) => result.status))
  assert.deepEqual([...statuses].filter((status) => status !== 200 && status !== 503), [], 'only 200 and 503')
  const slowest = Math.max(...run.results.map((result) => result.ms))
  assert.ok(slowest < TIMEOUT + 500, `slowest answer ${Math.round(slowest)} ms`)
  const failed = run.results.filter((result) => result.status === 503)
  const recovered = failed.length === 0 ? run.restartedAt : Math.max(...failed.map((result) => result.start + result.ms))
  t.diagnostic(`${run.results.length} requests, ${failed.length} x 503, slowest ${Math.round(slowest)} ms, ` +
    `last 503 ${Math.round(recovered - run.restartedAt)} ms after the restart (${run.logs.atLeast(50).length} error lines)`)
  const fatal = run.logs.atLeast(60)
  assert.deepEqual(fatal, [], 'nothing logged as fatal')
}

test('one server, replicas 1: kill -9 under load gives 503s only during the outage, fast, logged once as a store error, then recovery', async (t) => {
  const server = await MemcachedServer.start()
  t.after(() => server.stop())
  const run = await killUnderLoad(await start(t, [server], {}), server)
  checkContract(t, run)

  const failed = run.results.filter((result) => result.status === 503)
  assert.ok(failed.length > 0, 'the outage was felt')
  for (const result of failed) assert.ok(result.start + result.ms >= run.killedAt, 'no 503 before the kill')
  const deadline = run.restartedAt + RETRY_DELAY + 1000
  const late = run.results.filter((result) => result.start > deadline)
  assert.ok(late.length >= 100, `${late.length} requests after the recovery deadline`)
  assert.deepEqual(late.filter((result) => result.status !== 200), [], 'every request sent later than retryDelay + 1 s after the restart succeeds')

  // Each 503 is logged as an error by the plugin (with the store's code)
  // and by Fastify (the 503 reply); nothing else reaches error level, and a
  // sessionless error never appears.
  const errors = run.logs.atLeast(50)
  const plugin = errors.filter((entry) => /session store unavailable/.test(entry.msg) && entry.session !== undefined)
  const replies = errors.filter((entry) => entry.err?.code === 'SESSION_STORE_UNAVAILABLE' && entry.session === undefined)
  assert.equal(plugin.length, failed.length, 'one plugin error per 503')
  assert.equal(replies.length, failed.length, 'one reply error per 503')
  assert.equal(errors.length, plugin.length + replies.length, 'no other error')
  for (const entry of plugin) assert.match(entry.err?.code ?? '', /^MC_(CONNECTION|NO_SERVERS|TIMEOUT)$/)
  // The restart emptied memcached: sessions start afresh, as documented.
  assert.ok(run.results.some((result) => result.start > run.restartedAt && result.renewed))
})

test('three servers, replicas 2: kill -9 of one under load fails no request and loses no write', async (t) => {
  const servers = await Promise.all([MemcachedServer.start(), MemcachedServer.start(), MemcachedServer.start()])
  t.after(async () => { await Promise.all(servers.map(async (server) => await server.stop())) })
  const setup = await start(t, servers, { replicas: 2 })
  const run = await killUnderLoad(setup, servers[0] as MemcachedServer)
  checkContract(t, run)
  assert.deepEqual(run.results.filter((result) => result.status !== 200).map((result) => result.status), [], 'every request succeeded')
  assert.deepEqual(run.logs.atLeast(50), [], 'a replica\'s death absorbed is not an error')

  // No two requests of a session overlapped, so each 200 must have counted
  // exactly one more view than the previous one: a lost write shows as a step back.
  const bySession = new Map<number, number[]>()
  for (const result of run.results) bySession.set(result.session, [...bySession.get(result.session) ?? [], result.views as number])
  for (const [session, views] of bySession) {
    assert.deepEqual(views, views.map((_, i) => i + 2), `session ${session}: every increment kept, none lost`)
    assert.equal(run.results.filter((result) => result.session === session && result.renewed).length, 0, 'no session was replaced')
  }
})
