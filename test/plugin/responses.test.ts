// What a response carries besides its body: Cache-Control that keeps session
// responses out of shared caches and the browser's back/forward cache,
// nothing saved for an error response with saveOnError: false, and a typed
// error for session data JSON cannot hold. Real memcached.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient, MemcachedStore, type MemcachedSessionOptions } from '../../src/index.js'
import { FaultProxy } from '../helpers/proxy.js'
import { CountingStore, buildApp, cookieOf, idOf, keyOf, setCookieOf, useMemcached } from './helpers.js'

const PRIVATE = 'private, no-store'
const memcached = useMemcached()

interface Logged { level: number, msg: string, route?: string }

async function setup (t: TestContext, options: Partial<MemcachedSessionOptions> = {}): Promise<{ app: FastifyInstance, logs: Logged[] }> {
  const logs: Logged[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, callback) { logs.push(JSON.parse(chunk.toString()) as Logged); callback() } })
  const app = await buildApp({ client: memcached.client, ...options }, { logger: { level: 'warn', stream } })
  t.after(() => app.close())
  // Routes that set their own Cache-Control, with or without touching the session.
  app.post<{ Querystring: { cache: string } }>('/cached-login', async (request, reply) => {
    request.session.set('userId', 'alice')
    void reply.header('cache-control', request.query.cache)
    return {}
  })
  app.post<{ Querystring: { cache: string } }>('/cached-logout', async (request, reply) => {
    await request.session.destroy()
    void reply.header('cache-control', request.query.cache)
    return {}
  })
  app.get<{ Querystring: { cache: string } }>('/cached-page', async (request, reply) => {
    void reply.header('cache-control', request.query.cache)
    return { userId: request.session.get('userId') ?? null }
  })
  return { app, logs }
}

function cacheControl (response: { headers: Record<string, unknown> }): unknown {
  return response.headers['cache-control']
}

test('Cache-Control: every response to a request with a live session is private, no-store unless the route set its own', async (t) => {
  const { app } = await setup(t)
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/login' }))
  const page = await app.inject({ url: '/whoami', cookies: { sid: cookie } })
  assert.equal(setCookieOf(page), undefined, 'no cookie to set')
  assert.equal(cacheControl(page), PRIVATE, 'the Back button after logout must not show this page from the cache')
  const own = await app.inject({ url: '/cached-page?cache=private,%20max-age=60', cookies: { sid: cookie } })
  assert.equal(cacheControl(own), 'private, max-age=60')
  assert.equal(cacheControl(await app.inject({ url: '/whoami' })), undefined, 'no session: no header')
  assert.equal(cacheControl(await app.inject({ url: '/whoami', cookies: { sid: `${idOf(cookie)}.${'A'.repeat(43)}` } })), undefined, 'a forged cookie is no live session')
  await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
  assert.equal(cacheControl(await app.inject({ url: '/whoami', cookies: { sid: cookie } })), undefined, 'a destroyed session is no live session')
})

test('Cache-Control: with cacheControl: false, responses to live sessions are left alone; a response that sets the cookie is still no-store', async (t) => {
  const { app } = await setup(t, { cacheControl: false })
  const login = await app.inject({ method: 'POST', url: '/login' })
  assert.equal(cacheControl(login), 'no-store')
  const cookie = cookieOf(login)
  const page = await app.inject({ url: '/whoami', cookies: { sid: cookie } })
  assert.deepEqual(page.json(), { userId: 'alice' })
  assert.equal(cacheControl(page), undefined)
  assert.equal(cacheControl(await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })), 'no-store')
})

test('Cache-Control: public or s-maxage on a response that sets or clears the session cookie becomes private, no-store, with one warning per route', async (t) => {
  const { app, logs } = await setup(t)
  const warnings = (): Logged[] => logs.filter((entry) => entry.level === 40 && /shared-cacheable Cache-Control/.test(entry.msg))
  for (const cache of ['public, max-age=3600', 'PUBLIC', 'max-age=60, s-maxage=600', 's-maxage=60']) {
    const response = await app.inject({ method: 'POST', url: `/cached-login?cache=${encodeURIComponent(cache)}` })
    assert.ok(setCookieOf(response) !== undefined)
    assert.equal(cacheControl(response), PRIVATE, cache)
  }
  assert.deepEqual(warnings().map((entry) => entry.route), ['POST /cached-login'], 'one warning for the route')
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/login' }))
  const logout = await app.inject({ method: 'POST', url: '/cached-logout?cache=public', cookies: { sid: cookie } })
  assert.match(setCookieOf(logout) ?? '', /^sid=; Max-Age=0/)
  assert.equal(cacheControl(logout), PRIVATE)
  assert.deepEqual(warnings().map((entry) => entry.route), ['POST /cached-login', 'POST /cached-logout'])
  // No cookie set, no live session: the route's choice stands.
  assert.equal(cacheControl(await app.inject({ url: '/cached-page?cache=public,%20max-age=60' })), 'public, max-age=60')
  assert.equal(warnings().length, 2)
})

/** An app whose memcached sits behind a fault proxy the routes can switch to garbage mid-request. */
async function faultyApp (t: TestContext): Promise<{ app: FastifyInstance, proxy: FaultProxy }> {
  const proxy = await FaultProxy.start({ host: memcached.server.host, port: memcached.server.port })
  const viaProxy = new MemcachedClient({ servers: [proxy.address], failures: 1000 })
  t.after(async () => {
    await viaProxy.close()
    await proxy.close()
  })
  const { app } = await setup(t, { client: viaProxy })
  return { app, proxy }
}

test('Cache-Control after a store failure: a handler that caught it still answers a live session private, no-store', async (t) => {
  const { app, proxy } = await faultyApp(t)
  app.get('/reload-caught', async (request) => {
    proxy.garbage(Buffer.from('garbage\r\n'))
    const failed = await request.session.reload().then(() => false, () => true)
    proxy.pass()
    return { failed, userId: request.session.get('userId') ?? null }
  })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/login' }))
  const caught = await app.inject({ url: '/reload-caught', cookies: { sid: cookie } })
  assert.deepEqual(caught.json(), { failed: true, userId: 'alice' })
  assert.equal(setCookieOf(caught), undefined)
  assert.equal(cacheControl(caught), PRIVATE, 'the page shows the user\'s data: no cache may keep it')
})

for (const sid of ['a live session', 'a new session'] as const) {
  test(`Cache-Control after a store failure: the 503 of a failed save of ${sid} never goes out with the route's public Cache-Control`, async (t) => {
    const { app, proxy } = await faultyApp(t)
    app.post('/public-save', async (request, reply) => {
      void reply.header('cache-control', 'public, max-age=3600')
      request.session.set('views', 5)
      proxy.garbage(Buffer.from('garbage\r\n'))
      return {}
    })
    const cookie = sid === 'a live session' ? cookieOf(await app.inject({ method: 'POST', url: '/login' })) : undefined
    const saved = await app.inject({ method: 'POST', url: '/public-save', cookies: cookie === undefined ? {} : { sid: cookie } })
    proxy.pass()
    assert.equal(saved.statusCode, 503)
    assert.equal(saved.json<{ code: string }>().code, 'SESSION_STORE_UNAVAILABLE')
    assert.equal(setCookieOf(saved), undefined)
    // A shared cache must not serve this 503 to everyone for an hour.
    assert.equal(cacheControl(saved), cookie === undefined ? undefined : PRIVATE)
  })
}

test('saveOnError: by default a handler that sets a key and then throws still saves it; with false it saves nothing', async (t) => {
  for (const saveOnError of [true, false]) {
    const store = new CountingStore(new MemcachedStore({ client: memcached.client }))
    const app = await buildApp({ store, saveOnError })
    t.after(() => app.close())
    app.post('/fail', async (request) => {
      request.session.set('views', 99)
      throw new Error('the handler failed')
    })
    const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
    store.reset()
    const failed = await app.inject({ method: 'POST', url: '/fail', cookies: { sid: cookie } })
    assert.equal(failed.statusCode, 500)
    assert.deepEqual(store.calls, { get: 1, add: 0, cas: saveOnError ? 1 : 0, touch: 0, delete: 0 }, `saveOnError ${saveOnError}`)
    const views = (await app.inject({ url: '/peek', cookies: { sid: cookie } })).json<{ views: number }>().views
    assert.equal(views, saveOnError ? 99 : 1)
    const fresh = await app.inject({ method: 'POST', url: '/fail' })
    assert.equal(fresh.statusCode, 500)
    assert.equal(setCookieOf(fresh) !== undefined, saveOnError, 'a new session is stored and issued only when errors save')
  }
})

test('saveOnError: false still writes a response below 500', async (t) => {
  const { app } = await setup(t, { saveOnError: false })
  app.post('/teapot', async (request, reply) => {
    request.session.set('views', 7)
    return await reply.code(418).send({})
  })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/teapot' }))
  assert.equal((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json<{ views: number }>().views, 7)
})

test('session data JSON cannot hold (too deeply nested, circular, BigInt) is a 500 SESSION_INVALID_DATA, and the stored session is unchanged', async (t) => {
  const { app } = await setup(t)
  const deep: Record<string, unknown> = {}
  let level = deep
  for (let i = 0; i < 200_000; i++) {
    const next: Record<string, unknown> = {}
    level.a = next
    level = next
  }
  const circular: Record<string, unknown> = {}
  circular.self = circular
  const values: Record<string, unknown> = { deep, circular, bigint: 1n }
  app.post<{ Querystring: { kind: string } }>('/bad', async (request) => {
    request.session.set('cart', values[request.query.kind] as never)
    return {}
  })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  for (const kind of Object.keys(values)) {
    for (const sid of [cookie, undefined]) {
      const response = await app.inject({ method: 'POST', url: `/bad?kind=${kind}`, cookies: sid === undefined ? {} : { sid } })
      assert.equal(response.statusCode, 500, kind)
      assert.deepEqual(response.json(), {
        statusCode: 500,
        code: 'SESSION_INVALID_DATA',
        error: 'Internal Server Error',
        message: 'fastify-memcached-session: the session data cannot be stored as JSON (nested too deeply, circular, or holding a BigInt); nothing was saved'
      }, kind)
      assert.equal(setCookieOf(response), undefined)
    }
  }
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false })
  assert.match((await memcached.client.get(keyOf(idOf(cookie))))?.toString() ?? '', /"views":1}$/)
})
