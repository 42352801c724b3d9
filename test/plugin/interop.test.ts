// The ecosystem around a session store: our client as a connect store under
// express-session (with express) and @fastify/session, and @fastify/flash on
// top of our own request.session. Against real memcached.
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import type { Server } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import Fastify, { type FastifyInstance, type FastifyPluginCallback, type FastifyReply, type FastifyRequest } from 'fastify'
import { MemcachedStore, MemoryStore, memcachedSession } from '../../src/index.js'
import { connectStore, type ConnectSessionData, type ConnectStoreMethods, type StoredConnectSession } from '../../src/plugin/connect-store.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { CountingStore, SECRET, cookieOf, keyOf, useMemcached } from './helpers.js'

// Loaded untyped: express and express-session ship no types (no @types in
// this repo), and @fastify/flash's types retype request.session for
// @fastify/secure-session. The tests need only a few calls of each.
const load = createRequire(__filename)
const DAY = 86_400
const SIXTY_DAYS = 60 * DAY

const memcached = useMemcached()

/** Seconds until memcached expires `key` (meta get `t` flag), -1 for never, undefined when absent. */
async function ttlLeft (key: string): Promise<number | undefined> {
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = net.connect({ host: memcached.server.host, port: memcached.server.port })
    let text = ''
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      if (text.endsWith('\r\n')) {
        socket.end()
        resolve(text)
      }
    })
    socket.on('error', reject)
    socket.write(`mg ${key} t\r\n`)
  })
  const ttl = reply.match(/^HD t(-?\d+)\r\n$/)?.[1]
  return ttl === undefined ? undefined : Number(ttl)
}

/** Asserts memcached expires `key` about `seconds` from now: stored, and not instantly expired. */
async function assertExpiresIn (key: string, seconds: number): Promise<void> {
  const left = await ttlLeft(key)
  assert.ok(left !== undefined, `${key} is stored`)
  assert.ok(Math.abs(left - seconds) <= 5, `expires in ${left} s, wanted ${seconds} s`)
}

describe('connect store API', () => {
  const Store = connectStore()

  test('set, get, touch and destroy, in promise and callback forms', async () => {
    const store = new Store({ client: memcached.client })
    assert.ok(store instanceof EventEmitter)
    assert.equal(store.client, memcached.client)
    const session = { cookie: { expires: null, path: '/' }, user: 'alice' }
    assert.equal(await store.set('sid-promise', session), undefined)
    assert.deepEqual(await store.get('sid-promise'), session)

    const viaCallback = await new Promise((resolve, reject) => {
      store.set('sid-callback', { cookie: null, n: 1 }, (error) => {
        if (error !== null) reject(error)
        else store.get('sid-callback', (failure, found) => { if (failure !== null) reject(failure); else resolve(found) })
      })
    })
    assert.deepEqual(viaCallback, { cookie: null, n: 1 })

    await memcached.client.touch(keyOf('sid-promise'), 5)
    await store.touch('sid-promise', session)
    await assertExpiresIn(keyOf('sid-promise'), DAY)
    await new Promise<void>((resolve, reject) => { store.touch('sid-callback', { cookie: null }, (error) => { if (error === null) resolve(); else reject(error) }) })

    await store.destroy('sid-promise')
    assert.equal(await store.get('sid-promise'), null)
    await new Promise<void>((resolve) => { store.destroy('sid-callback', () => { resolve() }) })
    assert.equal(await store.get('sid-callback'), null)
    // Missing sessions are not errors.
    await store.destroy('sid-callback')
    await store.touch('never-stored', { cookie: null })
  })

  test('memcached holds prefix + sha256(sid), never the sid; TTL from the cookie\'s expiry, past 30 days too', async () => {
    const store = new Store({ client: memcached.client, prefix: 'app:cs:', ttl: 3600 })
    const expires = new Date(Date.now() + SIXTY_DAYS * 1000)
    await store.set('plain-sid', { cookie: { expires } })
    assert.equal(await memcached.client.get('app:cs:plain-sid'), undefined)
    assert.ok(await memcached.client.get(keyOf('plain-sid', 'app:cs:')) !== undefined)
    await assertExpiresIn(keyOf('plain-sid', 'app:cs:'), SIXTY_DAYS)
    // An ISO string, as a session read back from the store carries it.
    await store.set('plain-sid', { cookie: { expires: expires.toISOString() } })
    await assertExpiresIn(keyOf('plain-sid', 'app:cs:'), SIXTY_DAYS)
    await store.set('browser-sid', { cookie: { expires: null } })
    await assertExpiresIn(keyOf('browser-sid', 'app:cs:'), 3600)
    // An expired cookie deletes rather than writing a dead session.
    await store.set('plain-sid', { cookie: { expires: new Date(Date.now() - 1000) } })
    assert.equal(await store.get('plain-sid'), null)
  })

  test('errors reach the callback or reject; a value that is not JSON is a miss', async (t) => {
    const dead = await MemcachedServer.start()
    await dead.stop()
    const owned = new Store({ servers: [dead.address] })
    t.after(() => owned.close())
    await assert.rejects(owned.get('x'), { code: 'MC_CONNECTION' })
    const error = await new Promise((resolve) => { owned.set('x', { cookie: null }, resolve) })
    assert.equal((error as { code?: string }).code, 'MC_CONNECTION')

    const store = new Store({ client: memcached.client })
    await memcached.client.set(keyOf('garbage'), 'not json{', { ttl: 60 })
    assert.equal(await store.get('garbage'), null)
    assert.throws(() => new Store({ client: memcached.client, servers: ['127.0.0.1:1'] }), /either client or servers/)
    assert.throws(() => new Store({ client: memcached.client, prefix: 'has space' }), /prefix/)
    assert.throws(() => new Store({ client: memcached.client, ttl: 0 }), /ttl/)
  })

  test('close() closes a client the store created, never one passed in', async () => {
    const owned = new Store({ servers: [memcached.server.address] })
    await owned.set('owned', { cookie: null })
    await owned.close()
    await assert.rejects(owned.get('owned'), { code: 'MC_CLOSED' })
    const shared = new Store({ client: memcached.client })
    await shared.close()
    assert.deepEqual(await shared.get('owned'), { cookie: null })
    assert.equal((await shared.ping())[memcached.server.address]?.ok, true)
  })
})

// ---- express-session ----

interface ExpressRequest { session: Record<string, unknown> & { destroy (callback: (error?: unknown) => void): void } }
interface ExpressResponse { json (body: unknown): void }
type Handler = (request: ExpressRequest, response: ExpressResponse, next: (error?: unknown) => void) => void
interface ExpressApp {
  use (handler: unknown): void
  get (path: string, handler: Handler): void
  post (path: string, handler: Handler): void
  listen (port: number, host: string): Server
}
type ExpressSession = ((options: Record<string, unknown>) => unknown) & { Store: abstract new () => object }

async function listen (app: ExpressApp, t: TestContext): Promise<string> {
  const http = app.listen(0, '127.0.0.1')
  await once(http, 'listening')
  t.after(() => { http.closeAllConnections(); http.close() })
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}`
}

/** Plays a browser: keeps the session cookie between calls. */
function browser (base: string): { call (method: string, path: string): Promise<Record<string, unknown>>, cookie (): string | undefined } {
  let cookie: string | undefined
  return {
    async call (method, path) {
      const response = await fetch(base + path, { method, headers: cookie === undefined ? {} : { cookie } })
      const set = response.headers.get('set-cookie')
      if (set !== null) cookie = set.slice(0, set.indexOf(';'))
      assert.equal(response.status, 200)
      return await response.json() as Record<string, unknown>
    },
    cookie: () => cookie
  }
}

/** The session id inside an express-session cookie (`connect.sid=s%3A<id>.<signature>`). */
function expressSid (cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1))
  return value.slice(2, value.lastIndexOf('.'))
}

test('express-session + express 5: a store from connectStore(session.Store) sets, reads back, touches and destroys', async (t) => {
  const express = load('express') as () => ExpressApp
  const session = load('express-session') as ExpressSession
  const Store = connectStore(session.Store)
  const store = new Store({ client: memcached.client })
  assert.ok(store instanceof session.Store, 'an express-session Store, so createSession, load and regenerate are its own')
  let touches = 0
  const touch = store.touch.bind(store) as (sid: string, data: ConnectSessionData, callback: (error: unknown) => void) => void
  store.touch = ((sid: string, data: ConnectSessionData, callback: (error: unknown) => void) => { touches++; touch(sid, data, callback) }) as ConnectStoreMethods['touch']

  const app = express()
  app.use(session({ secret: SECRET, store, resave: false, saveUninitialized: false, cookie: { maxAge: SIXTY_DAYS * 1000 } }))
  app.post('/login', (request, response) => { request.session.user = 'alice'; response.json({ ok: true }) })
  app.get('/me', (request, response) => { response.json({ user: request.session.user ?? null }) })
  app.post('/regenerate', (request, response, next) => {
    (request.session as unknown as { regenerate (callback: (error?: unknown) => void): void }).regenerate((error) => {
      if (error !== undefined && error !== null) next(error)
      else response.json({ ok: true })
    })
  })
  app.post('/logout', (request, response, next) => {
    request.session.destroy((error) => { if (error !== undefined && error !== null) next(error); else response.json({ ok: true }) })
  })
  const user = browser(await listen(app, t))

  assert.deepEqual(await user.call('GET', '/me'), { user: null })
  assert.equal(user.cookie(), undefined, 'saveUninitialized: false')
  await user.call('POST', '/login')
  const cookie = user.cookie()
  assert.ok(cookie !== undefined)
  const key = keyOf(expressSid(cookie))
  const stored = JSON.parse((await memcached.client.get(key))?.toString() ?? '{}') as StoredConnectSession
  assert.equal(stored.user, 'alice')
  // Sixty days: memcached gets an absolute time, and the item is not instantly expired.
  await assertExpiresIn(key, SIXTY_DAYS)

  await memcached.client.touch(key, 5)
  assert.deepEqual(await user.call('GET', '/me'), { user: 'alice' })
  assert.equal(touches, 1, 'an unmodified session is touched, not rewritten')
  await assertExpiresIn(key, SIXTY_DAYS)

  await user.call('POST', '/regenerate')
  assert.equal(await memcached.client.get(key), undefined, 'regenerate (express-session\'s Store.regenerate) destroyed the old id')

  await user.call('POST', '/login')
  const current = keyOf(expressSid(user.cookie() ?? ''))
  assert.ok(await memcached.client.get(current) !== undefined)
  await user.call('POST', '/logout')
  assert.equal(await memcached.client.get(current), undefined)
  assert.deepEqual(await user.call('GET', '/me'), { user: null })
})

// ---- @fastify/session ----

interface FastifySessionObject {
  sessionId: string
  get (key: string): unknown
  set (key: string, value: unknown): void
  destroy (): Promise<void>
}

function fastifySessionOf (request: FastifyRequest): FastifySessionObject {
  return (request as unknown as { session: FastifySessionObject }).session
}

function plugin (name: string): FastifyPluginCallback<Record<string, unknown>> {
  const module = load(name) as { default?: unknown }
  return (module.default ?? module) as FastifyPluginCallback<Record<string, unknown>>
}

test('@fastify/session: connectStore() sets, reads back and destroys; a 60-day cookie is a 60-day item', async (t) => {
  const store = new (connectStore())({ client: memcached.client, prefix: 'fsess:' })
  const app = Fastify()
  t.after(() => app.close())
  await app.register(plugin('@fastify/cookie'))
  await app.register(plugin('@fastify/session'), {
    secret: SECRET, store, saveUninitialized: false, cookie: { secure: false, maxAge: SIXTY_DAYS * 1000 }
  })
  app.post('/login', async (request) => { fastifySessionOf(request).set('user', 'alice'); return { id: fastifySessionOf(request).sessionId } })
  app.get('/me', async (request) => ({ user: fastifySessionOf(request).get('user') ?? null }))
  app.post('/logout', async (request) => { await fastifySessionOf(request).destroy(); return { ok: true } })

  const login = await app.inject({ method: 'POST', url: '/login' })
  const sid = login.json<{ id: string }>().id
  const cookie = login.cookies.find((entry) => entry.name === 'sessionId')
  assert.ok(cookie !== undefined)
  const key = keyOf(sid, 'fsess:')
  assert.equal((await store.get(sid))?.user, 'alice')
  await assertExpiresIn(key, SIXTY_DAYS)
  assert.deepEqual((await app.inject({ url: '/me', cookies: { sessionId: cookie.value } })).json(), { user: 'alice' })

  await app.inject({ method: 'POST', url: '/logout', cookies: { sessionId: cookie.value } })
  assert.equal(await memcached.client.get(key), undefined)
  assert.deepEqual((await app.inject({ url: '/me', cookies: { sessionId: cookie.value } })).json(), { user: null })
})

// ---- @fastify/flash on our request.session ----

type FlashRequest = (type: string, ...message: string[]) => number
type FlashReply = (type?: string) => Record<string, string[]> | string[]

function flashOf (request: FastifyRequest): FlashRequest {
  return (request as unknown as { flash: FlashRequest }).flash.bind(request)
}

function flashesOf (reply: FastifyReply): FlashReply {
  return (reply as unknown as { flash: FlashReply }).flash.bind(reply)
}

async function flashApp (t: TestContext, store: CountingStore): Promise<FastifyInstance> {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(memcachedSession, { secret: SECRET, store })
  await app.register(plugin('@fastify/flash'))
  app.post('/save', async (request, reply) => {
    flashOf(request)('info', 'Saved')
    const count = flashOf(request)('warning', 'Low on %s', 'disk')
    return await reply.send({ count })
  })
  app.get('/', async (_request, reply) => ({ flashes: flashesOf(reply)() }))
  app.get('/info', async (_request, reply) => ({ info: flashesOf(reply)('info') }))
  return app
}

for (const kind of ['memcached', 'memory'] as const) {
  test(`@fastify/flash on request.session (${kind}): flash, show once, then nothing; reading no flashes writes nothing`, async (t) => {
    const inner = kind === 'memcached' ? new MemcachedStore({ client: memcached.client }) : new MemoryStore()
    t.after(() => inner.close?.())
    const store = new CountingStore(inner)
    const app = await flashApp(t, store)
    const saved = await app.inject({ method: 'POST', url: '/save' })
    assert.deepEqual(saved.json(), { count: 1 })
    const sid = cookieOf(saved)

    const info = await app.inject({ url: '/info', cookies: { sid } })
    assert.deepEqual(info.json(), { info: ['Saved'] }, 'one type taken, the others kept')
    assert.deepEqual((await app.inject({ url: '/', cookies: { sid } })).json(), { flashes: { warning: ['Low on disk'] } })
    assert.deepEqual((await app.inject({ url: '/', cookies: { sid } })).json(), { flashes: {} })

    store.reset()
    assert.deepEqual((await app.inject({ url: '/', cookies: { sid } })).json(), { flashes: {} })
    assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 1, delete: 0 }, 'flash sets {} back to {}: a touch, no rewrite')
  })
}

test('@fastify/flash needs our plugin registered first (it checks the request.session decorator)', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  const store = new MemoryStore()
  t.after(() => store.close())
  void app.register(plugin('@fastify/flash'))
  void app.register(memcachedSession, { secret: SECRET, store })
  await assert.rejects(async () => { await app.ready() }, /session/)
})
