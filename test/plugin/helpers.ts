// Shared by the plugin suites: an app with the routes the tests drive, cookie
// helpers, and a store wrapper that counts calls.
import { createHash } from 'node:crypto'
import { sign, unsign } from '@fastify/cookie'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type LightMyRequestResponse } from 'fastify'
import { memcachedSession, type MemcachedSessionOptions, type SessionStore, type StoredRecord } from '../../src/index.js'
import type { CasResult } from '../../src/protocol/client.js'

export { useMemcached, type MemcachedFixture } from '../helpers/shared-memcached.js'

declare module '../../src/plugin/session.js' {
  interface SessionData {
    views: number
    userId: string
    cart: string[]
    [key: `k${number}`]: number
  }
}

export const SECRET = 'a-test-secret-that-is-long-enough-0001'
export const OLD_SECRET = 'an-older-secret-that-is-long-enough-002'

/**
 * A cookie value as the plugin signs it: `<id>.<signature>`, the HMAC-SHA256
 * covering `<name>=<id>` so the value is valid under that cookie name only.
 */
export function signCookie (id: string, secret: string = SECRET, name = 'sid'): string {
  return sign(`${name}=${id}`, secret).slice(name.length + 1)
}

/** Whether `value` carries a valid signature of its id under cookie `name` with `secret`. */
export function cookieVerifies (value: string, secret: string = SECRET, name = 'sid'): boolean {
  return unsign(`${name}=${value}`, secret).valid
}

/** Counts each store call, passing everything through. */
export class CountingStore implements SessionStore {
  readonly calls = { get: 0, add: 0, cas: 0, touch: 0, delete: 0 }
  /** The ttl argument of every add, cas and touch, in order. */
  readonly ttls: number[] = []

  constructor (readonly inner: SessionStore) {}

  get total (): number {
    return Object.values(this.calls).reduce((sum, count) => sum + count, 0)
  }

  reset (): void {
    for (const name of Object.keys(this.calls) as Array<keyof CountingStore['calls']>) this.calls[name] = 0
    this.ttls.length = 0
  }

  async get (key: string): Promise<StoredRecord | undefined> {
    this.calls.get++
    return await this.inner.get(key)
  }

  async add (key: string, value: string, ttl: number): Promise<boolean> {
    this.calls.add++
    this.ttls.push(ttl)
    return await this.inner.add(key, value, ttl)
  }

  async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    this.calls.cas++
    this.ttls.push(ttl)
    return await this.inner.cas(key, value, version, ttl)
  }

  async touch (key: string, ttl: number): Promise<boolean> {
    this.calls.touch++
    this.ttls.push(ttl)
    return await this.inner.touch(key, ttl)
  }

  async delete (key: string): Promise<boolean> {
    this.calls.delete++
    return await this.inner.delete(key)
  }
}

/**
 * A {@link CountingStore} that also offers `getAndTouch` (load and renew in
 * one call), counted in `renewingLoads`; its ttl goes to `ttls` too.
 */
export class RenewingCountingStore extends CountingStore {
  renewingLoads = 0

  constructor (inner: SessionStore & Required<Pick<SessionStore, 'getAndTouch'>>) {
    super(inner)
  }

  override reset (): void {
    super.reset()
    this.renewingLoads = 0
  }

  async getAndTouch (key: string, ttl: number): Promise<StoredRecord | undefined> {
    this.renewingLoads++
    this.ttls.push(ttl)
    return await (this.inner as Required<Pick<SessionStore, 'getAndTouch'>>).getAndTouch(key, ttl)
  }
}

/** An app with the plugin and the routes the suites drive. */
export async function buildApp (options: Partial<MemcachedSessionOptions>, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(server)
  await app.register(memcachedSession, { secret: SECRET, ...options })
  app.get('/peek', async (request) => ({ views: request.session.get('views') ?? null, isNew: request.session.isNew }))
  app.get('/id', async (request) => ({ id: request.session.id }))
  app.post('/count', async (request) => {
    const views = (request.session.get('views') ?? 0) + 1
    request.session.set('views', views)
    return { views }
  })
  app.post('/login', async (request) => {
    await request.session.regenerate()
    request.session.set('userId', 'alice')
    return { id: request.session.id }
  })
  app.get('/whoami', async (request) => ({ userId: request.session.get('userId') ?? null }))
  app.post('/logout', async (request) => {
    await request.session.destroy()
    return { ok: true }
  })
  app.get('/off', { config: { session: false } }, async (request) => ({ session: request.session }))
  return app
}

/** The `sid` Set-Cookie header of a response, if any. */
export function setCookieOf (response: LightMyRequestResponse, name = 'sid'): string | undefined {
  const header = response.headers['set-cookie']
  const all = header === undefined ? [] : Array.isArray(header) ? header : [header]
  return all.find((line) => line.startsWith(`${name}=`))
}

/** The cookie value (`<id>.<signature>`) a response set, or throws. */
export function cookieOf (response: LightMyRequestResponse, name = 'sid'): string {
  const line = setCookieOf(response, name)
  if (line === undefined) throw new Error(`no ${name} cookie in ${JSON.stringify(response.headers)}`)
  return line.slice(name.length + 1, line.indexOf(';'))
}

/** The session id inside a cookie value. */
export function idOf (cookie: string): string {
  return cookie.slice(0, cookie.lastIndexOf('.'))
}

/** The store key of a session id under `prefix`. */
export function keyOf (id: string, prefix = 'sess:'): string {
  return prefix + createHash('sha256').update(id).digest('hex')
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}
