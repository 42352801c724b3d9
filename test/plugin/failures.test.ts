// The store unreachable, hanging, or back again; what gets logged; who closes
// the client. Against a real memcached this file starts, kills and restarts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { MemcachedClient, MemcachedError, MemcachedStore } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { FaultProxy } from '../helpers/proxy.js'
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
