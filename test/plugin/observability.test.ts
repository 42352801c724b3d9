// What operators see: the session:load and session:save tracing channels,
// the log levels of session events, fastify.memcached shared for caching, and
// fastify.sessionStore.ping() for readiness. Against real memcached.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { Writable } from 'node:stream'
import { sign } from '@fastify/cookie'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { MemcachedClient, MemcachedError, MemcachedStore, MemoryStore, memcachedSession, type MemcachedSessionOptions } from '../../src/index.js'
import type { SessionLoadTrace, SessionSaveTrace } from '../../src/plugin/diagnostics.js'
import type { CommandTrace } from '../../src/protocol/diagnostics.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { CountingStore, SECRET, buildApp, cookieOf, idOf, keyOf, useMemcached } from './helpers.js'

const loads = diagnosticsChannel.tracingChannel<unknown, SessionLoadTrace>('fastify-memcached-session:session:load')
const saves = diagnosticsChannel.tracingChannel<unknown, SessionSaveTrace>('fastify-memcached-session:session:save')
const commands = diagnosticsChannel.tracingChannel<unknown, CommandTrace>('fastify-memcached-session:command')
const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const

const memcached = useMemcached()

function hashOf (cookie: string): string {
  return keyOf(idOf(cookie)).slice('sess:'.length)
}

interface Seen { channel: string, event: string, trace: Record<string, unknown> }

/** Subscribes to the three channels for the test's duration; `seen` holds a copy of each event's payload. */
function listen (t: TestContext): Seen[] {
  const seen: Seen[] = []
  for (const [name, channel] of [['load', loads], ['save', saves], ['command', commands]] as const) {
    const record = (event: string) => (message: unknown): void => {
      seen.push({ channel: name, event, trace: { ...(message as Record<string, unknown>) } })
    }
    const handlers = { start: record('start'), end: record('end'), asyncStart: record('asyncStart'), asyncEnd: record('asyncEnd'), error: record('error') }
    const tracing = channel as diagnosticsChannel.TracingChannel<unknown, object>
    tracing.subscribe(handlers)
    t.after(() => { tracing.unsubscribe(handlers) })
  }
  return seen
}

/** The `asyncEnd` payloads of one channel, in order. */
function ends (seen: Seen[], channel: 'load' | 'save'): Array<Record<string, unknown>> {
  return seen.filter((entry) => entry.channel === channel && entry.event === 'asyncEnd').map((entry) => entry.trace)
}

async function setup (t: TestContext, options: Partial<MemcachedSessionOptions> = {}, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = await buildApp({ client: memcached.client, ...options }, server)
  t.after(() => app.close())
  return app
}

test('session:load and session:save: outcomes, sha256 of the id, sizes and attempts; never the id or a value', async (t) => {
  const app = await setup(t)
  // Another writer between this request's load and its save forces a merge.
  app.post('/contended', async (request) => {
    const key = keyOf(request.session.id)
    await memcached.client.set(key, (await memcached.client.get(key)) ?? '', { ttl: 60 })
    request.session.set('cart', ['book'])
    return {}
  })
  app.post('/reload', async (request) => {
    await request.session.reload()
    return {}
  })
  const seen = listen(t)

  const created = await app.inject({ method: 'POST', url: '/count' })
  const cookie = cookieOf(created)
  const hash = hashOf(cookie)
  assert.deepEqual(ends(seen, 'load'), [], 'no cookie: nothing to load')
  const stored = await memcached.client.get(keyOf(idOf(cookie)))
  assert.deepEqual(ends(seen, 'save'), [{ sessionHash: hash, outcome: 'added', bytes: stored?.length, attempts: 1 }])

  seen.length = 0
  await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.deepEqual(ends(seen, 'load'), [{ sessionHash: hash, reload: false, outcome: 'hit', bytes: stored?.length }])
  assert.deepEqual(ends(seen, 'save'), [], 'renewed by the load (gets and touch in one batch): nothing to write')
  // The span opens before the memcached commands it causes and closes after them.
  assert.deepEqual(seen.filter((entry) => entry.event === 'start' || entry.event === 'asyncEnd').map((entry) => `${entry.channel}:${entry.event}${entry.channel === 'command' ? ` ${String(entry.trace.command)}` : ''}`), [
    'load:start', 'command:start gets', 'command:start touch', 'command:asyncEnd gets', 'command:asyncEnd touch', 'load:asyncEnd'
  ])

  seen.length = 0
  const touching = await setup(t, { rolling: false })
  touching.get('/touch', async (request) => { request.session.touch(); return {} })
  await touching.inject({ url: '/touch', cookies: { sid: cookie } })
  assert.deepEqual(ends(seen, 'save'), [{ sessionHash: hash, outcome: 'touched', bytes: 0, attempts: 1 }])
  assert.deepEqual(seen.filter((entry) => entry.event === 'start' || entry.event === 'asyncEnd').map((entry) => `${entry.channel}:${entry.event}`), [
    'load:start', 'command:start', 'command:asyncEnd', 'load:asyncEnd',
    'save:start', 'command:start', 'command:asyncEnd', 'save:asyncEnd'
  ])
  assert.deepEqual(seen.filter((entry) => entry.channel === 'save').map((entry) => entry.event), ['start', 'end', 'asyncStart', 'asyncEnd'])

  seen.length = 0
  await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
  const [cas] = ends(seen, 'save')
  assert.equal(cas?.outcome, 'cas')
  assert.equal(cas?.attempts, 1)
  assert.equal(cas?.bytes, (await memcached.client.get(keyOf(idOf(cookie))))?.length)

  seen.length = 0
  await app.inject({ method: 'POST', url: '/contended', cookies: { sid: cookie } })
  assert.deepEqual(ends(seen, 'save').map((trace) => [trace.outcome, trace.attempts]), [['merged', 3]], 'cas, re-read, cas')

  seen.length = 0
  await app.inject({ method: 'POST', url: '/reload', cookies: { sid: cookie } })
  assert.deepEqual(ends(seen, 'load').map((trace) => [trace.reload, trace.outcome]), [[false, 'hit'], [true, 'hit']])

  seen.length = 0
  const login = await app.inject({ method: 'POST', url: '/login', cookies: { sid: cookie } })
  const fresh = cookieOf(login)
  assert.deepEqual(ends(seen, 'save').map((trace) => [trace.outcome, trace.sessionHash]), [['regenerated', hash], ['added', hashOf(fresh)]])

  seen.length = 0
  await app.inject({ method: 'POST', url: '/logout', cookies: { sid: fresh } })
  assert.deepEqual(ends(seen, 'save').map((trace) => [trace.outcome, trace.sessionHash, trace.attempts]), [['destroyed', hashOf(fresh), 1]])

  seen.length = 0
  await app.inject({ url: '/peek', cookies: { sid: fresh } })
  assert.deepEqual(ends(seen, 'load'), [{ sessionHash: hashOf(fresh), reload: false, outcome: 'miss', bytes: 0 }])
  assert.deepEqual(ends(seen, 'save'), [], 'a miss writes nothing')

  seen.length = 0
  const forged = `${idOf(fresh)}.${'A'.repeat(43)}`
  await app.inject({ url: '/peek', cookies: { sid: forged } })
  await app.inject({ url: '/peek', cookies: { sid: 'not-a-session-cookie' } })
  assert.deepEqual(ends(seen, 'load'), [
    { sessionHash: hashOf(fresh), reload: false, outcome: 'rejected', bytes: 0 },
    { sessionHash: undefined, reload: false, outcome: 'rejected', bytes: 0 }
  ])
  assert.equal(seen.filter((entry) => entry.channel === 'command').length, 0, 'a rejected cookie costs no store call')

  const all = JSON.stringify(seen.map((entry) => ({ ...entry.trace, error: undefined })))
  for (const secret of [idOf(cookie), idOf(fresh), 'alice', 'book']) assert.ok(!all.includes(secret), `no ${secret} in any payload`)
})

test('session:load and session:save: a failing store publishes error, then asyncEnd with the error and no outcome', async (t) => {
  const store = new CountingStore(new MemoryStore())
  const app = await setup(t, { client: undefined, store })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  const failure = new MemcachedError('MC_CONNECTION', 'connection lost', { server: 'test' })
  store.get = async () => { throw failure }
  const seen = listen(t)
  assert.equal((await app.inject({ url: '/peek', cookies: { sid: cookie } })).statusCode, 503)
  const events = seen.filter((entry) => entry.channel === 'load')
  assert.deepEqual(events.map((entry) => entry.event), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  const last = events.at(-1)?.trace
  assert.equal(last?.outcome, undefined)
  assert.equal((last?.error as { code?: string }).code, 'SESSION_STORE_UNAVAILABLE')
  assert.equal(((last?.error as Error).cause as MemcachedError).code, 'MC_CONNECTION')
})

test('nothing is published on the session channels while nobody subscribes', async (t) => {
  assert.equal(loads.hasSubscribers, false)
  assert.equal(saves.hasSubscribers, false)
  const app = await setup(t)
  let published = 0
  const restore: Array<() => void> = []
  for (const channel of [loads, saves]) {
    for (const event of EVENTS) {
      const original = channel[event].publish
      channel[event].publish = (message: unknown) => { published++; original.call(channel[event], message) }
      restore.push(() => { channel[event].publish = original })
    }
  }
  try {
    const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
    await app.inject({ url: '/peek', cookies: { sid: cookie } })
    await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
    await app.inject({ url: '/peek', cookies: { sid: `${idOf(cookie)}.${'A'.repeat(43)}` } })
    await app.inject({ url: '/peek', cookies: { sid: 'malformed' } })
    const fresh = cookieOf(await app.inject({ method: 'POST', url: '/login', cookies: { sid: cookie } }))
    await app.inject({ method: 'POST', url: '/logout', cookies: { sid: fresh } })
  } finally {
    for (const undo of restore) undo()
  }
  assert.equal(published, 0)
})

interface LogEntry { level: number, msg: string, session?: string, err?: unknown }

function capture (): { stream: Writable, entries: () => LogEntry[], raw: () => string } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, callback) { lines.push(chunk.toString()); callback() } })
  return {
    stream,
    entries: () => lines.map((line) => JSON.parse(line) as LogEntry).filter((entry) => entry.msg.startsWith('fastify-memcached-session:')),
    raw: () => lines.join('')
  }
}

const DEBUG = 20
const WARN = 40
const ERROR = 50

test('session events are logged at fitting levels with sha256 of the id, never the id', async (t) => {
  const log = capture()
  const store = new CountingStore(new MemcachedStore({ client: memcached.client }))
  const app = await setup(t, { client: undefined, store }, { logger: { level: 'debug', stream: log.stream } })
  const events = (): Array<[number, string, string | undefined]> => log.entries().map((entry) => [entry.level, entry.msg.slice('fastify-memcached-session: '.length), entry.session])
  const mark = (): number => log.entries().length

  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  assert.deepEqual(events(), [[DEBUG, 'session created', hashOf(cookie)]])

  let from = mark()
  const fresh = cookieOf(await app.inject({ method: 'POST', url: '/login', cookies: { sid: cookie } }))
  assert.deepEqual(events().slice(from), [
    [DEBUG, 'session regenerated; the old id is deleted', hashOf(cookie)],
    [DEBUG, 'session created', hashOf(fresh)]
  ])

  from = mark()
  await app.inject({ method: 'POST', url: '/logout', cookies: { sid: fresh } })
  assert.deepEqual(events().slice(from), [[DEBUG, 'session destroyed', hashOf(fresh)]])

  from = mark()
  await app.inject({ url: '/peek', cookies: { sid: fresh } })
  assert.deepEqual(events().slice(from), [[DEBUG, 'session not in the store (idle-expired or destroyed); starting a new session', hashOf(fresh)]])

  from = mark()
  const forgedId = 'F'.repeat(43)
  await app.inject({ url: '/peek', cookies: { sid: `${forgedId}.${sign(forgedId, 'not-the-secret-but-long-enough-000000').slice(44)}` } })
  await app.inject({ url: '/peek', cookies: { sid: 'someone-elses-cookie' } })
  assert.deepEqual(events().slice(from), [
    [WARN, 'session cookie with an invalid signature (tampered with, or signed by a secret no longer configured); starting a new session', keyOf(forgedId).slice(5)],
    [DEBUG, 'malformed session cookie ignored; starting a new session', undefined]
  ])

  from = mark()
  const live = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  store.cas = async () => { throw new MemcachedError('MC_TIMEOUT', 'timed out', { server: memcached.server.address }) }
  assert.equal((await app.inject({ method: 'POST', url: '/count', cookies: { sid: live } })).statusCode, 503)
  // Fastify's error handler logs the 503 too; ours is the entry with the hash.
  const failed = log.entries().slice(from).filter((entry) => entry.level === ERROR && entry.session !== undefined)
  assert.equal(failed.length, 1)
  assert.equal(failed[0]?.session, hashOf(live))
  assert.equal(failed[0]?.msg, 'fastify-memcached-session: session store unavailable, could not save the session')
  assert.equal((failed[0]?.err as { code?: string } | undefined)?.code, 'MC_TIMEOUT', 'the store error is attached')

  for (const secret of [cookie, fresh, live].flatMap((value) => [idOf(value), value.slice(44)])) {
    assert.ok(!log.raw().includes(secret), 'neither an id nor a signature reaches the log')
  }
})

test('forged cookies by the thousand give one warning a second, the rest at debug', async (t) => {
  const log = capture()
  const app = await setup(t, {}, { logger: { level: 'debug', stream: log.stream } })
  const started = Date.now()
  for (let i = 0; i < 200; i++) {
    const id = `${String(i).padStart(3, '0')}${'F'.repeat(40)}`
    await app.inject({ url: '/peek', cookies: { sid: `${id}.${sign(id, 'not-the-secret-but-long-enough-000000').slice(44)}` } })
  }
  const forged = log.entries().filter((entry) => (entry.msg ?? '').includes('invalid signature'))
  assert.equal(forged.length, 200, 'every forged cookie is still logged')
  const warnings = forged.filter((entry) => entry.level === WARN)
  const seconds = Math.ceil((Date.now() - started) / 1000)
  assert.ok(warnings.length >= 1 && warnings.length <= seconds + 1, `${warnings.length} warnings for 200 forged cookies in ${seconds} s`)
  assert.equal(forged.filter((entry) => entry.level === DEBUG).length, 200 - warnings.length)
})

test('routine session events stay out of an info-level log', async (t) => {
  const log = capture()
  const app = await setup(t, {}, { logger: { level: 'info', stream: log.stream } })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
  await app.inject({ url: '/peek', cookies: { sid: cookie } })
  await app.inject({ url: '/peek', cookies: { sid: 'malformed' } })
  assert.deepEqual(log.entries(), [])
})

test('fastify.memcached is the plugin\'s client: the app caches over the same connection', async (t) => {
  const own = await buildApp({ servers: [memcached.server.address] })
  assert.ok(own.memcached instanceof MemcachedClient)
  assert.deepEqual(own.memcached.servers, [memcached.server.address])
  own.get('/cached', async () => {
    const hit = await own.memcached.get('cache:greeting')
    if (hit !== undefined) return { value: hit.toString(), from: 'cache' }
    await own.memcached.set('cache:greeting', 'hello', { ttl: 60 })
    return { value: 'hello', from: 'origin' }
  })
  assert.deepEqual((await own.inject('/cached')).json(), { value: 'hello', from: 'origin' })
  assert.deepEqual((await own.inject('/cached')).json(), { value: 'hello', from: 'cache' })
  const cookie = cookieOf(await own.inject({ method: 'POST', url: '/count' }))
  assert.ok(await own.memcached.get(keyOf(idOf(cookie))) !== undefined, 'sessions and cache share the client')
  await own.close()
  await assert.rejects(own.memcached.get('cache:greeting'), { code: 'MC_CLOSED' }, 'the plugin closed the client it created')

  const shared = await setup(t)
  assert.equal(shared.memcached, memcached.client, 'the client option is decorated as given')
  const store = new MemcachedStore({ client: memcached.client })
  const viaStore = await setup(t, { client: undefined, store })
  assert.equal(viaStore.memcached, memcached.client, 'a MemcachedStore as store decorates its client')
})

test('the docs\' fastify.memcached example answers a hostile id with a 400 that does not echo it', async (t) => {
  const app = await setup(t)
  // As in docs/operations.md: a params schema keeps caller input out of memcached keys.
  const params = { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]{1,20}$' } }, required: ['id'] }
  app.get('/products/:id', { config: { session: false }, schema: { params } }, async (request) => {
    const { id } = request.params as { id: string }
    const cached = await app.memcached.get(`product:${id}`)
    if (cached !== undefined) return JSON.parse(cached.toString()) as unknown
    const product = { id }
    await app.memcached.set(`product:${id}`, JSON.stringify(product), { ttl: 300 })
    return product
  })
  assert.deepEqual((await app.inject('/products/42')).json(), { id: '42' })
  for (const hostile of ['a%0D%0Aflush_all', 'a%20b', 'x'.repeat(80)]) {
    const response = await app.inject(`/products/${hostile}`)
    assert.equal(response.statusCode, 400)
    assert.ok(!response.body.includes('flush_all') && !response.body.includes('xxxx') && !response.body.includes('MC_'), response.body)
  }
})

test('fastify.memcached is not decorated with another store; an app\'s own decorator is kept', async (t) => {
  const store = new MemoryStore()
  t.after(() => store.close())
  const memory = await setup(t, { client: undefined, store })
  assert.equal(memory.hasDecorator('memcached'), false)
  assert.equal(memory.sessionStore, store)

  const app = Fastify()
  t.after(() => app.close())
  const mine = new MemcachedClient({ servers: [memcached.server.address] })
  t.after(() => mine.close())
  app.decorate('memcached', mine)
  await app.register(memcachedSession, { secret: SECRET, client: memcached.client })
  await app.ready()
  assert.equal(app.memcached, mine)
})

test('fastify.sessionStore.ping(): per-server health and latency, for a readiness route', async (t) => {
  const down = await MemcachedServer.start()
  await down.stop()
  const pair = new MemcachedClient({ servers: [memcached.server.address, down.address], timeout: 300, connectTimeout: 300 })
  t.after(() => pair.close())
  const app = await setup(t, { client: pair })
  // The health route of docs/operations.md ("Readiness").
  app.get('/health/ready', { config: { session: false } }, async (_request, reply) => {
    const servers = await app.sessionStore.ping?.() ?? {}
    const ready = Object.values(servers).some((health) => health.ok)
    return await reply.code(ready ? 200 : 503).send({ ready, servers })
  })
  const health = await app.sessionStore.ping?.()
  assert.ok(health !== undefined)
  assert.deepEqual(Object.keys(health), [memcached.server.address, down.address])
  const up = health[memcached.server.address]
  assert.equal(up?.ok, true)
  assert.equal(up?.ejected, false)
  assert.ok(typeof up?.latencyMs === 'number' && up.latencyMs >= 0 && up.latencyMs < 1000)
  assert.equal(health[down.address]?.ok, false)
  assert.equal(typeof health[down.address]?.error, 'string')

  const ready = await app.inject('/health/ready')
  assert.equal(ready.statusCode, 200)
  assert.equal(ready.headers['set-cookie'], undefined)

  const dead = new MemcachedClient({ servers: [down.address], timeout: 300, connectTimeout: 300 })
  t.after(() => dead.close())
  const unready = await setup(t, { client: dead })
  unready.get('/health/ready', async (_request, reply) => {
    const servers = await unready.sessionStore.ping?.() ?? {}
    return await reply.code(Object.values(servers).some((health) => health.ok) ? 200 : 503).send(servers)
  })
  assert.equal((await unready.inject('/health/ready')).statusCode, 503)

  const memory = new MemoryStore()
  t.after(() => memory.close())
  const local = await setup(t, { client: undefined, store: memory })
  assert.deepEqual(await local.sessionStore.ping?.(), { memory: { ok: true, ejected: false, latencyMs: 0 } })
})
