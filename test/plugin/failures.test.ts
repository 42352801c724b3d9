// The store unreachable, hanging, or back again; what gets logged; who closes
// the client. Against a real memcached this file starts, kills and restarts.
import { test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { MemcachedClient, MemcachedError, MemcachedStore } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { FaultProxy } from '../helpers/proxy.js'
import type { CasResult } from '../../src/protocol/client.js'
import { CountingStore, buildApp, cookieOf, idOf, keyOf, setCookieOf, sleep, useMemcached } from './helpers.js'

const TIMEOUT = 400
const memcached = useMemcached()

function fastClient (address: string): MemcachedClient {
  return new MemcachedClient({ servers: [address], timeout: TIMEOUT, connectTimeout: TIMEOUT, retryDelay: 200 })
}

/** Retries until `attempt` returns true, for at most `ms`. */
async function eventually (ms: number, attempt: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await attempt()) return true
    await sleep(50)
  }
  return false
}

test('memcached down: 503 fast with a clear message and no cookie; sessionless requests unaffected; recovery', async (t) => {
  const own = await MemcachedServer.start()
  t.after(() => own.stop())
  const client = fastClient(own.address)
  t.after(() => client.close())
  const app = await buildApp({ client })
  t.after(() => app.close())
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))

  await own.kill()
  for (const request of [
    { method: 'GET' as const, url: '/peek', cookies: { sid: cookie } },
    { method: 'POST' as const, url: '/count', cookies: { sid: cookie } },
    { method: 'POST' as const, url: '/count' }
  ]) {
    const started = Date.now()
    const response = await app.inject(request)
    assert.ok(Date.now() - started < TIMEOUT + 1000, 'answered well within the client timeout')
    assert.equal(response.statusCode, 503, JSON.stringify(request))
    assert.match(response.json<{ message: string }>().message, /^fastify-memcached-session: session store unavailable/)
    assert.equal(response.json<{ code: string }>().code, 'SESSION_STORE_UNAVAILABLE')
    assert.equal(setCookieOf(response), undefined)
  }
  const untouched = await app.inject({ url: '/peek' })
  assert.equal(untouched.statusCode, 200)
  assert.equal(setCookieOf(untouched), undefined)

  await own.restart()
  const recovered = await eventually(5000, async () => (await app.inject({ method: 'POST', url: '/count' })).statusCode === 200)
  assert.ok(recovered, 'sessions work again once memcached is back')
})

test('memcached hanging: 503 within the client timeout, and the good data is not overwritten', async (t) => {
  const proxy = await FaultProxy.start({ host: memcached.server.host, port: memcached.server.port })
  t.after(() => proxy.close())
  const client = fastClient(proxy.address)
  t.after(() => client.close())
  const app = await buildApp({ client })
  t.after(() => app.close())
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))

  proxy.blackhole()
  const started = Date.now()
  const response = await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
  assert.ok(Date.now() - started < TIMEOUT + 1000)
  assert.equal(response.statusCode, 503)
  assert.equal(setCookieOf(response), undefined)

  proxy.pass()
  const stored = await memcached.client.get(keyOf(idOf(cookie)))
  assert.match(stored?.toString() ?? '', /:\{"views":1\}$/)
  const back = await eventually(5000, async () => (await app.inject({ url: '/peek', cookies: { sid: cookie } })).statusCode === 200)
  assert.ok(back)
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false })
})

test('store errors: the 503 body holds the SESSION_* code and a generic message; the MC_* code and server go to the log, never the id', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, callback) { lines.push(chunk.toString()); callback() } })
  const own = await MemcachedServer.start()
  t.after(() => own.stop())
  const client = fastClient(own.address)
  t.after(() => client.close())
  const app = await buildApp({ client }, { logger: { level: 'info', stream } })
  t.after(() => app.close())
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  const id = idOf(cookie)

  await own.kill()
  const response = await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.equal(response.statusCode, 503)
  assert.deepEqual(response.json(), {
    statusCode: 503,
    code: 'SESSION_STORE_UNAVAILABLE',
    error: 'Service Unavailable',
    message: 'fastify-memcached-session: session store unavailable, could not load the session'
  })
  for (const internal of ['MC_', own.address, String(own.port), keyOf(id)]) assert.ok(!response.body.includes(internal), `${internal} stays out of the body`)
  const errors = lines.map((line) => JSON.parse(line) as { level: number, session?: string, msg: string, err?: { code?: string, server?: string } }).filter((entry) => entry.level >= 50)
  const ours = errors.find((entry) => entry.session !== undefined)
  assert.ok(ours !== undefined, 'an error entry with the session hash')
  assert.equal(ours.session, keyOf(id).slice('sess:'.length))
  assert.match(ours.msg, /session store unavailable/)
  assert.equal(ours.err?.code, 'MC_CONNECTION', 'the store\'s code is in the log')
  assert.equal(ours.err?.server, own.address, 'and the server')
  for (const line of lines) {
    assert.ok(!line.includes(id), 'the id never reaches the log')
    assert.ok(!line.includes(cookie.slice(44)), 'nor the signature')
  }
})

async function connections (): Promise<number> {
  const stats = await memcached.client.stats()
  return Number(stats[memcached.server.address]?.curr_connections)
}

test('the plugin closes the client it created on close; a client passed in stays open', async () => {
  const baseline = await connections()
  const owned = await buildApp({ servers: [memcached.server.address] })
  await owned.inject({ method: 'POST', url: '/count' })
  assert.equal(await connections(), baseline + 1)
  await owned.close()
  assert.ok(await eventually(2000, async () => await connections() === baseline), 'its connection is closed')

  const client = new MemcachedClient({ servers: [memcached.server.address] })
  const shared = await buildApp({ client })
  await shared.inject({ method: 'POST', url: '/count' })
  await shared.close()
  await client.set('still-open', 'yes')
  assert.equal((await client.get('still-open'))?.toString(), 'yes')
  await client.close()
})

test('a store failure inside the handler (destroy) gives one 503, no cookie, no second store call', async (t) => {
  const client = new MemcachedClient({ servers: [memcached.server.address] })
  t.after(() => client.close())
  const inner = new MemcachedStore({ client })
  const store = new CountingStore(inner)
  store.delete = async () => {
    store.calls.delete++
    throw new MemcachedError('MC_CONNECTION', 'connection lost', { server: memcached.server.address })
  }
  const app = await buildApp({ store })
  t.after(() => app.close())
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/login' }))
  store.reset()
  const response = await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
  assert.equal(response.statusCode, 503)
  assert.equal(response.json<{ message: string }>().message, 'fastify-memcached-session: session store unavailable, could not destroy the session')
  assert.equal(response.json<{ code: string }>().code, 'SESSION_STORE_UNAVAILABLE')
  assert.equal(setCookieOf(response), undefined)
  assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 0, delete: 1 })
  // The session is still there: logout failed visibly rather than silently.
  assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: cookie } })).json(), { userId: 'alice' })
})

/** A store over the shared memcached whose next `failures[method]` calls fail as a dropped connection would. */
class FlakyStore extends CountingStore {
  readonly failures = { add: 0, cas: 0, delete: 0 }
  /** How many of the next `cas` calls memcached applies before their reply is lost (a timeout after the write). */
  appliedThenLost = 0

  private lost (method: keyof FlakyStore['failures']): MemcachedError | undefined {
    if (this.failures[method] === 0) return undefined
    this.failures[method]--
    this.calls[method]++
    return new MemcachedError('MC_CONNECTION', 'connection lost', { server: memcached.server.address })
  }

  override async add (key: string, value: string, ttl: number): Promise<boolean> {
    const error = this.lost('add')
    if (error !== undefined) throw error
    return await super.add(key, value, ttl)
  }

  override async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    const error = this.lost('cas')
    if (error !== undefined) throw error
    const result = await super.cas(key, value, version, ttl)
    if (this.appliedThenLost === 0) return result
    this.appliedThenLost--
    throw new MemcachedError('MC_TIMEOUT', 'no reply within the timeout', { server: memcached.server.address })
  }

  override async delete (key: string): Promise<boolean> {
    const error = this.lost('delete')
    if (error !== undefined) throw error
    return await super.delete(key)
  }
}

/** A stored session (`views` 1) whose cookie the next request sends, with the store's counts reset. */
async function counted (app: FastifyInstance, store: FlakyStore): Promise<string> {
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  store.reset()
  return cookie
}

async function flakyApp (t: TestContext, options: { saveOnError?: boolean } = {}): Promise<{ app: FastifyInstance, store: FlakyStore }> {
  const client = new MemcachedClient({ servers: [memcached.server.address] })
  t.after(() => client.close())
  const store = new FlakyStore(new MemcachedStore({ client }))
  const app = await buildApp({ store, ...options })
  t.after(() => app.close())
  app.post('/save-caught', async (request) => {
    request.session.set('views', 7)
    const failed = await request.session.save().then(() => false, () => true)
    request.session.set('userId', 'bob')
    return { failed }
  })
  app.post('/save-uncaught', async (request) => {
    request.session.set('views', 7)
    await request.session.save()
    return {}
  })
  app.post('/login-caught', async (request) => {
    const failed = await request.session.regenerate().then(() => false, () => true)
    request.session.set('userId', 'alice')
    return { failed }
  })
  app.post('/logout-caught', async (request) => ({ failed: await request.session.destroy().then(() => false, () => true) }))
  return { app, store }
}

test('a handler that catches a failed save() and answers: what it set before and after the failure is written at the end of the request', async (t) => {
  const { app, store } = await flakyApp(t)
  for (const sid of ['a live session', 'a new session'] as const) {
    const cookie = sid === 'a live session' ? await counted(app, store) : undefined
    store.reset()
    store.failures[sid === 'a live session' ? 'cas' : 'add'] = 1
    const response = await app.inject({ method: 'POST', url: '/save-caught', cookies: cookie === undefined ? {} : { sid: cookie } })
    assert.equal(response.statusCode, 200, sid)
    assert.deepEqual(response.json(), { failed: true }, sid)
    assert.equal(store.calls.add + store.calls.cas, 2, `${sid}: the failed save, then the end of the request's`)
    const saved = cookie ?? cookieOf(response)
    assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: saved } })).json(), { views: 7, isNew: false }, sid)
    assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: saved } })).json(), { userId: 'bob' }, sid)
  }
})

test('a caught save() whose write memcached applied before the reply was lost: the end of the request merges onto it, nothing lost or doubled', async (t) => {
  const { app, store } = await flakyApp(t)
  const cookie = await counted(app, store)
  store.appliedThenLost = 1
  const response = await app.inject({ method: 'POST', url: '/save-caught', cookies: { sid: cookie } })
  assert.deepEqual(response.json(), { failed: true })
  // The retry's cas finds the version the lost write made: it reads the record again and re-applies this request's changes.
  assert.deepEqual(store.calls, { get: 2, add: 0, cas: 3, touch: 0, delete: 0 })
  assert.match((await memcached.client.get(keyOf(idOf(cookie))))?.toString() ?? '', /:\{"views":7,"userId":"bob"\}$/)
})

test('a handler that catches a failed save() while the store stays down: the end of the request fails as well, a 503 rather than a 200 that lost the data', async (t) => {
  const { app, store } = await flakyApp(t)
  const cookie = await counted(app, store)
  store.failures.cas = 2
  const response = await app.inject({ method: 'POST', url: '/save-caught', cookies: { sid: cookie } })
  assert.equal(response.statusCode, 503)
  assert.equal(response.json<{ code: string }>().code, 'SESSION_STORE_UNAVAILABLE')
  assert.equal(setCookieOf(response), undefined)
  assert.equal(store.calls.cas, 2)
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false }, 'the stored session is as it was')
})

test('saveOnError: the 503 of a save() the handler did not catch does not call the store again', async (t) => {
  const { app, store } = await flakyApp(t, { saveOnError: true })
  const cookie = await counted(app, store)
  store.failures.cas = 1
  const response = await app.inject({ method: 'POST', url: '/save-uncaught', cookies: { sid: cookie } })
  assert.equal(response.statusCode, 503)
  assert.deepEqual(store.calls, { get: 1, add: 0, cas: 1, touch: 0, delete: 0 })
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false })
})

test('a handler that catches a failed regenerate() and logs the user in anyway: the login lands under a new id, never the planted one', async (t) => {
  const { app, store } = await flakyApp(t)
  const planted = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  store.failures.delete = 1
  const response = await app.inject({ method: 'POST', url: '/login-caught', cookies: { sid: planted } })
  assert.equal(response.statusCode, 200)
  assert.deepEqual(response.json(), { failed: true })
  const issued = cookieOf(response)
  assert.notEqual(idOf(issued), idOf(planted))
  assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: issued } })).json(), { userId: 'alice' })
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: issued } })).json(), { views: null, isNew: false }, 'nothing carried from a record whose delete failed')
  assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: planted } })).json(), { userId: null }, 'the planted id never holds the login')
})

test('a handler that catches a failed destroy(): the response still clears the cookie; the record outlives it only until its ttl', async (t) => {
  const { app, store } = await flakyApp(t)
  const cookie = await counted(app, store)
  store.failures.delete = 1
  const response = await app.inject({ method: 'POST', url: '/logout-caught', cookies: { sid: cookie } })
  assert.equal(response.statusCode, 200)
  assert.deepEqual(response.json(), { failed: true })
  assert.match(setCookieOf(response) ?? '', /^sid=; Max-Age=0/)
  assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 0, delete: 1 }, 'nothing written for the emptied session')
  assert.match((await memcached.client.get(keyOf(idOf(cookie))))?.toString() ?? '', /:\{"views":1\}$/, 'the delete failed: the record is still there')
})
