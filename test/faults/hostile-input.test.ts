// Hostile input changes nothing: cookies that are huge, full of control
// characters, repeated, not base64url, or forged by the ten thousand cost no
// memcached command (counted with memcached's own `stats`) and never a 500;
// session data with __proto__ / constructor / prototype keys, set through the
// API or planted in memcached by hand, pollutes no prototype.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setImmediate as macrotask } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient, type SessionData } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { seededRandom } from '../helpers/random.js'
import { buildApp, cookieOf, idOf, keyOf, setCookieOf, signCookie } from '../plugin/helpers.js'

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort()
// Every memcached command the plugin could send shows up in one of these.
const COMMANDS = ['cmd_get', 'cmd_set', 'cmd_touch', 'cmd_flush', 'delete_hits', 'delete_misses', 'incr_hits', 'incr_misses', 'decr_hits', 'decr_misses']

type Key = keyof SessionData
let server: MemcachedServer
let client: MemcachedClient
let observer: MemcachedClient
let app: FastifyInstance
/** Runs inside POST /conflict, between the load and the save. */
let meddle: () => Promise<void> = async () => {}

before(async () => {
  server = await MemcachedServer.start()
  client = new MemcachedClient({ servers: [server.address] })
  observer = new MemcachedClient({ servers: [server.address] })
  app = await buildApp({ client })
  app.post<{ Body: { key: string, value: unknown } }>('/put', async (request) => {
    request.session.set(request.body.key as Key, request.body.value as never)
    return { polluted: request.session.get('polluted' as Key) ?? null, isAdmin: request.session.get('isAdmin' as Key) ?? null }
  })
  app.get('/probe', async (request) => {
    const read = (key: string): unknown => {
      const value: unknown = request.session.get(key as Key)
      return typeof value === 'function' ? 'a function' : value ?? null
    }
    return {
      isNew: request.session.isNew,
      views: read('views'),
      polluted: read('polluted'),
      isAdmin: read('isAdmin'),
      proto: read('__proto__'),
      constructor: read('constructor'),
      toString: read('toString'),
      hasOwnProperty: read('hasOwnProperty')
    }
  })
  app.post('/conflict', async (request) => {
    await meddle()
    request.session.set('k1', 1)
    return { ok: true }
  })
})

after(async () => {
  await app.close()
  await client.close()
  await observer.close()
  await server.stop()
  assert.deepEqual(unhandled, [], 'no unhandled rejection in the whole file')
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES, 'Object.prototype unchanged')
})

/**
 * Sum of memcached's command counters once everything the app has sent so
 * far was answered, awaited or not: after a macrotask (for work started from
 * microtasks), `stats` goes through the app's own client, whose one
 * connection answers in order.
 */
async function traffic (): Promise<number> {
  await macrotask()
  const stats = (await client.stats())[server.address] ?? {}
  return COMMANDS.reduce((sum, name) => sum + Number(stats[name] ?? 0), 0)
}

function noPollution (): void {
  const probe: Record<string, unknown> = {}
  assert.equal(probe.polluted, undefined)
  assert.equal(probe.isAdmin, undefined)
  assert.equal(Object.getPrototypeOf(probe), Object.prototype)
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES)
}

const base64url = (bytes: number): string => randomBytes(bytes).toString('base64url')
/** Well formed (43 + '.' + 43), signed by nobody we trust. */
const forged = (): string => `${base64url(32)}.${randomBytes(32).toString('base64').replace(/=+$/, '')}`

test('hostile cookies: no store command, no 500, no cookie set, a fresh session', async () => {
  const random = seededRandom(5)
  const controls = Array.from({ length: 32 }, (_, code) => String.fromCharCode(code)).concat('\u007f')
  const withControl = (i: number): string => {
    const id = base64url(32).split('')
    id[Math.floor(random() * id.length)] = controls[i % controls.length] as string
    return `${id.join('')}.${base64url(32)}`
  }
  const headers: Array<[string, string]> = [
    ['8 KiB sid', `sid=${'A'.repeat(8192)}`],
    ['8 KiB of other cookies around a forged sid', `a=${'b'.repeat(4096)}; sid=${forged()}; c=${'d'.repeat(4096)}`],
    ['8 KiB percent-encoded sid', `sid=${'%41'.repeat(2731)}`],
    ...controls.map((_, i): [string, string] => [`control character ${i}`, `sid=${withControl(i)}`]),
    ['percent-encoded controls', `sid=${base64url(32).slice(0, 40)}%00%0d%0a.${base64url(32)}`],
    ['CR LF inside', `sid=${base64url(32)}\r\n.${base64url(32)}`],
    ['500 sid cookies', Array.from({ length: 500 }, () => `sid=${forged()}`).join('; ')],
    ['a sid per malformed shape', ['', '.', '..', 'a.b', forged().slice(1), `${forged()}x`].map((value) => `sid=${value}`).join('; ')],
    ['standard base64 id (+ and /)', `sid=${'+/'.repeat(21)}+.${base64url(32)}`],
    ['padded id', `sid=${base64url(32).slice(0, 42)}=.${base64url(32)}`],
    ['non-ASCII id of 43 characters', `sid=${'é'.repeat(43)}.${base64url(32)}`],
    ['percent-encoded base64url id', `sid=${encodeURIComponent(base64url(32)).replace(/./g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}.${base64url(32)}`],
    ['invalid percent-encoding', `sid=%E0%A4%A.${base64url(32)}`],
    ['a sid= prefix inside another cookie\'s name', `xsid=${forged()}; sidx=${forged()}`],
    ['quoted value', `sid="${forged()}"`]
  ]
  const before = await traffic()
  for (const [name, cookie] of headers) {
    const response = await app.inject({ url: '/probe', headers: { cookie } })
    assert.equal(response.statusCode, 200, name)
    assert.equal(response.json<{ isNew: boolean }>().isNew, true, name)
    assert.equal(setCookieOf(response), undefined, name)
  }
  assert.equal(await traffic() - before, 0, 'not one memcached command')
  noPollution()
})

test('10,000 distinct forged cookies in a row cost no store command and no 500', async () => {
  const before = await traffic()
  const otherSecret = 'an-attacker-secret-that-is-long-enough!!'
  const statuses = new Map<number, number>()
  for (let i = 0; i < 10_000; i++) {
    // Half random signatures, half real signatures under a secret we do not hold.
    const cookie = i % 2 === 0 ? forged() : signCookie(base64url(32), otherSecret)
    const response = await app.inject({ url: '/probe', cookies: { sid: cookie } })
    statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
  }
  assert.deepEqual([...statuses], [[200, 10_000]])
  assert.equal(await traffic() - before, 0, 'not one memcached command')
})

test('__proto__, constructor and prototype keys set through the API are plain data and pollute nothing', async () => {
  const fresh = await app.inject({ url: '/probe' })
  assert.deepEqual(fresh.json(), {
    isNew: true, views: null, polluted: null, isAdmin: null, proto: null, constructor: null, toString: null, hasOwnProperty: null
  }, 'a fresh session has no inherited members')

  const put = await app.inject({ method: 'POST', url: '/put', payload: { key: '__proto__', value: { polluted: true, isAdmin: true } } })
  assert.equal(put.statusCode, 200)
  assert.deepEqual(put.json(), { polluted: null, isAdmin: null }, 'setting __proto__ does not change what the session inherits')
  const cookie = cookieOf(put)
  for (const [key, value] of [['constructor', { prototype: { polluted: true } }], ['prototype', { polluted: true }]] as const) {
    const response = await app.inject({ method: 'POST', url: '/put', cookies: { sid: cookie }, payload: { key, value } })
    assert.deepEqual(response.json(), { polluted: null, isAdmin: null })
  }
  noPollution()
  const stored = (await observer.get(keyOf(idOf(cookie))))?.toString() ?? ''
  assert.match(stored, /"__proto__":\{"polluted":true,"isAdmin":true\}/, 'stored as data, not dropped')
  const loaded = await app.inject({ url: '/probe', cookies: { sid: cookie } })
  assert.deepEqual(loaded.json(), {
    isNew: false, views: null, polluted: null, isAdmin: null, proto: { polluted: true, isAdmin: true }, constructor: { prototype: { polluted: true } }, toString: null, hasOwnProperty: null
  })
  noPollution()
})

test('__proto__, constructor and prototype keys planted in memcached by hand pollute nothing, on load, save and merge', async () => {
  const id = base64url(32)
  const cookie = signCookie(id)
  const key = keyOf(id)
  const now = Math.floor(Date.now() / 1000)
  const planted = (views: number): string => `${now}::{"__proto__":{"polluted":true,"isAdmin":true},"constructor":{"prototype":{"polluted":true}},"prototype":{"polluted":true},"views":${views}}`
  await observer.set(key, planted(1), { ttl: 60 })

  const probe = await app.inject({ url: '/probe', cookies: { sid: cookie } })
  assert.equal(probe.statusCode, 200)
  assert.deepEqual(probe.json(), {
    isNew: false, views: 1, polluted: null, isAdmin: null, proto: { polluted: true, isAdmin: true }, constructor: { prototype: { polluted: true } }, toString: null, hasOwnProperty: null
  })
  noPollution()

  const count = await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
  assert.deepEqual(count.json(), { views: 2 })
  noPollution()

  // A concurrent write between load and save: the save re-reads and merges.
  meddle = async () => { await observer.set(key, planted(7), { ttl: 60 }) }
  try {
    assert.equal((await app.inject({ method: 'POST', url: '/conflict', cookies: { sid: cookie } })).statusCode, 200)
  } finally {
    meddle = async () => {}
  }
  noPollution()
  const merged = (await observer.get(key))?.toString() ?? ''
  assert.match(merged, /"views":7/)
  assert.match(merged, /"k1":1/)
  assert.match(merged, /"__proto__":\{"polluted":true,"isAdmin":true\}/)
  const after = await app.inject({ url: '/probe', cookies: { sid: cookie } })
  assert.deepEqual(after.json<{ polluted: unknown, isAdmin: unknown }>().polluted, null)
  assert.deepEqual(after.json<{ polluted: unknown, isAdmin: unknown }>().isAdmin, null)
})
