/**
 * The HTTP variants: the same two routes behind each session implementation.
 * Peer plugins are loaded with `createRequire` and typed here by the little
 * the bench uses: their own typings augment `FastifyRequest.session` with
 * types that conflict with ours, and the whole repository compiles as one
 * program.
 */
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import type { FastifyInstance, FastifyPluginCallback, FastifyRequest } from 'fastify'
import { MemoryStore, memcachedSession } from '../../src/index.js'
import { FloorStore } from './floor-store.js'

export type VariantId =
  | 'none'
  | 'ours-memcached'
  | 'ours-memcached-twin'
  | 'ours-memory'
  | 'floor-memcached'
  | 'floor-memcached-work'
  | 'floor-memcached-gat'
  | 'fastify-session-memcached'
  | 'fastify-session-memory'
  | 'secure-session'
  | 'fastify-session-redis'

export interface Variant {
  id: VariantId
  label: string
  /** The cookie that carries the session; undefined for no session. */
  cookieName: string | undefined
  /** A data server it needs. */
  needs: 'memcached' | 'redis' | undefined
  note?: string
}

export const VARIANTS: readonly Variant[] = [
  { id: 'none', label: 'no session (ceiling)', cookieName: undefined, needs: undefined },
  { id: 'ours-memcached', label: 'ours + memcached', cookieName: 'sid', needs: 'memcached' },
  {
    id: 'ours-memcached-twin',
    label: 'ours + memcached again (A/A control)',
    cookieName: 'sid',
    needs: 'memcached',
    note: 'the same app as ours + memcached, a second server process measured like any variant (full runs only): its ratio to ours + memcached is what the machine\'s noise alone does to a paired ratio'
  },
  { id: 'ours-memory', label: 'ours + MemoryStore', cookieName: 'sid', needs: undefined },
  {
    id: 'floor-memcached',
    label: 'floor: MemoryStore + bare memcached round trips',
    cookieName: 'sid',
    needs: 'memcached',
    note: 'ours with MemoryStore, each load and each write first waiting for a memcached round trip (one on /ro, two on /rw; renewing rides with the load): one no-op (`mn`) per tick for all the calls of the tick, over a raw socket that parses nothing: what any memcached store pays at least on this machine'
  },
  {
    id: 'floor-memcached-work',
    label: 'floor: MemoryStore + memcached doing the session commands',
    cookieName: 'sid',
    needs: 'memcached',
    note: 'the floor above, but each round trip makes memcached do what a session store asks of it: `gets` and `touch` per load, a `set` of the record per write, ahead of the tick\'s no-op (whose `MN` is found in the replies, not parsed): what ours can reach here; its gap to the floor above is memcached\'s work, on the load generator\'s core'
  },
  {
    id: 'floor-memcached-gat',
    label: 'floor: MemoryStore + memcached doing the fewest session commands',
    cookieName: 'sid',
    needs: 'memcached',
    note: 'the session-work floor with one command where it sends two: `gat` loads and renews (full runs only). A /rw request then costs memcached two commands, as connect-memcached\'s get and set do: the most any rolling store reaches here, against that peer too'
  },
  {
    id: 'fastify-session-memcached',
    label: '@fastify/session + connect-memcached',
    cookieName: 'sessionId',
    needs: 'memcached',
    note: 'defaults: rolling saves the session on every request'
  },
  {
    id: 'fastify-session-memory',
    label: '@fastify/session + MemoryStore',
    cookieName: 'sessionId',
    needs: undefined,
    note: 'its default store; rolling saves the session on every request'
  },
  { id: 'secure-session', label: '@fastify/secure-session (cookie only)', cookieName: 'session', needs: undefined },
  { id: 'fastify-session-redis', label: '@fastify/session + connect-redis', cookieName: 'sessionId', needs: 'redis' }
]

/** The HTTP A/A control: a second server of the ours + memcached app (full runs only). */
export const TWIN_VARIANT: VariantId = 'ours-memcached-twin'

/** Variants measured in full runs only: context for the targets, not targets; `--quick` stays under 3 minutes. */
export const FULL_RUN_VARIANTS: ReadonlySet<VariantId> = new Set([TWIN_VARIANT, 'floor-memcached-gat'])

/** Addresses of the data servers, `127.0.0.1:port`. */
export interface Backends {
  memcached: string | undefined
  redis: string | undefined
}

/** What the routes need of any session object: all four have get and set. */
interface SessionLike {
  get (key: string): unknown
  set (key: string, value: unknown): void
}

type StoreConstructor = new (options: Record<string, unknown>) => object

const load = createRequire(__filename)
const SECRET = 'bench-secret-bench-secret-bench-secret-0123456789'

function requirePlugin (name: string): FastifyPluginCallback<Record<string, unknown>> {
  const module = load(name) as { default?: unknown }
  return (module.default ?? module) as FastifyPluginCallback<Record<string, unknown>>
}

function sessionOf (request: FastifyRequest): SessionLike {
  return (request as unknown as { session: SessionLike }).session
}

function need (address: string | undefined, what: string): string {
  if (address === undefined) throw new Error(`this variant needs ${what}`)
  return address
}

async function registerSessions (app: FastifyInstance, id: VariantId, backends: Backends): Promise<void> {
  switch (id) {
    case 'none':
      return
    case 'ours-memcached':
    case 'ours-memcached-twin':
      await app.register(memcachedSession, { secret: SECRET, servers: [need(backends.memcached, 'memcached')] })
      return
    case 'ours-memory': {
      const store = new MemoryStore()
      app.addHook('onClose', async () => { await store.close() })
      await app.register(memcachedSession, { secret: SECRET, store })
      return
    }
    case 'floor-memcached': {
      const store = await FloorStore.bare(need(backends.memcached, 'memcached'))
      app.addHook('onClose', async () => { await store.close() })
      await app.register(memcachedSession, { secret: SECRET, store })
      return
    }
    case 'floor-memcached-work':
    case 'floor-memcached-gat': {
      const store = await FloorStore.sessionWork(need(backends.memcached, 'memcached'), id === 'floor-memcached-gat')
      app.addHook('onClose', async () => { await store.close() })
      await app.register(memcachedSession, { secret: SECRET, store })
      return
    }
    case 'secure-session':
      await app.register(requirePlugin('@fastify/secure-session'), { key: randomBytes(32), cookie: { path: '/', httpOnly: true } })
      return
    default:
      await registerFastifySession(app, id, backends)
  }
}

async function registerFastifySession (app: FastifyInstance, id: VariantId, backends: Backends): Promise<void> {
  await app.register(requirePlugin('@fastify/cookie'))
  const fastifySession = load('@fastify/session') as { Store: unknown }
  const options: Record<string, unknown> = { secret: SECRET, cookie: { secure: false } }
  if (id === 'fastify-session-memcached') {
    const connectMemcached = load('connect-memcached') as (session: unknown) => StoreConstructor
    const MemcachedStore = connectMemcached(fastifySession)
    const store = new MemcachedStore({ hosts: [need(backends.memcached, 'memcached')], prefix: 'fsess:' }) as { client?: { end (): void } }
    app.addHook('onClose', async () => { store.client?.end() })
    options.store = store
  } else if (id === 'fastify-session-redis') {
    const { createClient } = load('redis') as { createClient (options: { url: string }): { connect (): Promise<unknown>, quit (): Promise<unknown> } }
    const { RedisStore } = load('connect-redis') as { RedisStore: StoreConstructor }
    const client = createClient({ url: `redis://${need(backends.redis, 'redis-server')}` })
    await client.connect()
    app.addHook('onClose', async () => { await client.quit() })
    options.store = new RedisStore({ client, prefix: 'fsess:' })
  }
  await app.register(requirePlugin('@fastify/session'), options)
}

/** Registers the variant's session plugin and the two measured routes. */
export async function buildApp (app: FastifyInstance, id: VariantId, backends: Backends): Promise<void> {
  await registerSessions(app, id, backends)
  if (id === 'none') {
    // The ceiling: the same routes and payloads, the counter in a variable.
    let counter = 0
    app.get('/rw', async () => ({ n: ++counter }))
    app.get('/ro', async () => ({ n: counter }))
    return
  }
  app.get('/rw', async (request) => {
    const session = sessionOf(request)
    const n = Number(session.get('n') ?? 0) + 1
    session.set('n', n)
    return { n }
  })
  app.get('/ro', async (request) => ({ n: Number(sessionOf(request).get('n') ?? 0) }))
}
