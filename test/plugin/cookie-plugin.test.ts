// The plugin works whether or not the app registered @fastify/cookie, in
// either order, and signs with its own secret, not the app's.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fastifyCookie from '@fastify/cookie'
import Fastify, { type FastifyInstance } from 'fastify'
import { MemoryStore, memcachedSession } from '../../src/index.js'
import { SECRET, cookieOf, setCookieOf } from './helpers.js'

async function app (order: 'cookie-first' | 'session-first'): Promise<FastifyInstance> {
  const instance = Fastify()
  const store = new MemoryStore()
  const cookie = async (): Promise<void> => { await instance.register(fastifyCookie, { secret: 'the-apps-own-cookie-secret-unrelated' }) }
  const session = async (): Promise<void> => { await instance.register(memcachedSession, { secret: SECRET, store }) }
  if (order === 'cookie-first') {
    await cookie()
    await session()
  } else {
    await session()
    await cookie()
  }
  instance.post('/both', async (request, reply) => {
    void reply.setCookie('theme', 'dark', { path: '/' })
    request.session.set('views', (request.session.get('views') ?? 0) + 1)
    return { theme: request.cookies.theme ?? null, views: request.session.get('views') }
  })
  instance.addHook('onClose', async () => { await store.close() })
  return instance
}

for (const order of ['cookie-first', 'session-first'] as const) {
  test(`with @fastify/cookie registered (${order}): both cookies are set and read`, async (t) => {
    const instance = await app(order)
    t.after(() => instance.close())
    const first = await instance.inject({ method: 'POST', url: '/both' })
    assert.equal(first.statusCode, 200)
    const header = first.headers['set-cookie']
    assert.ok(Array.isArray(header) && header.length === 2, JSON.stringify(header))
    assert.ok(header.some((line) => line.startsWith('theme=dark')))
    const sid = cookieOf(first)
    const second = await instance.inject({ method: 'POST', url: '/both', cookies: { sid, theme: 'dark' } })
    assert.deepEqual(second.json(), { theme: 'dark', views: 2 })
    assert.equal(setCookieOf(second), undefined)
  })
}

test('a route that sets its own Set-Cookie header keeps it next to the session cookie', async (t) => {
  const instance = Fastify()
  const store = new MemoryStore()
  t.after(async () => { await instance.close(); await store.close() })
  await instance.register(memcachedSession, { secret: SECRET, store })
  instance.post('/', async (request, reply) => {
    void reply.header('set-cookie', 'lang=en; Path=/')
    request.session.set('views', 1)
    return {}
  })
  const response = await instance.inject({ method: 'POST', url: '/' })
  assert.deepEqual((response.headers['set-cookie'] as string[]).map((line) => line.split('=')[0]), ['lang', 'sid'])
})
