// A small app on fastify-memcached-session: log in (regenerate), count
// (a session value), log out (destroy). Run it with `npm run example`.
//
//   curl -c jar -b jar -X POST localhost:3000/login -H 'content-type: application/json' -d '{"user":"alice"}'
//   curl -c jar -b jar -X POST localhost:3000/counter
//   curl -c jar -b jar localhost:3000/
//   curl -c jar -b jar -X POST localhost:3000/logout
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { MemoryStore, memcachedSession, type MemcachedSessionOptions } from '../src/index.js'
import { startLocalMemcached } from './local-memcached.js'

// Typed session data: `get('views')` is `number | undefined`, and setting a
// key not declared here is a compile error.
declare module '../src/index.js' {
  interface SessionData {
    userId: string
    views: number
  }
}

async function backend (): Promise<{ options: Pick<MemcachedSessionOptions, 'servers' | 'store'>, stop: () => void }> {
  const configured = process.env.MEMCACHED_SERVERS
  if (configured !== undefined && configured !== '') {
    console.log(`sessions in memcached at ${configured}`)
    return { options: { servers: configured.split(',') }, stop: () => {} }
  }
  const local = await startLocalMemcached()
  if (local !== undefined) {
    console.log(`sessions in a memcached started for this example at ${local.address}`)
    return { options: { servers: [local.address] }, stop: local.stop }
  }
  console.log('memcached is not installed: falling back to MemoryStore (sessions vanish on restart)')
  const store = new MemoryStore()
  return { options: { store }, stop: () => { void store.close() } }
}

function secret (): string {
  const fromEnv = process.env.SESSION_SECRET
  if (fromEnv !== undefined && fromEnv.length >= 32) return fromEnv
  // A random secret logs everybody out on restart; set SESSION_SECRET to keep sessions.
  console.log('SESSION_SECRET is unset: using a random secret for this run')
  return randomBytes(32).toString('base64url')
}

async function main (): Promise<void> {
  const store = await backend()
  const app = Fastify({ logger: { level: 'info' } })
  await app.register(memcachedSession, { secret: secret(), ...store.options })

  app.get('/', async (request) => ({
    user: request.session.get('userId') ?? null,
    views: request.session.get('views') ?? 0
  }))

  app.post<{ Body: { user?: string } }>('/login', async (request, reply) => {
    const user = request.body?.user
    if (typeof user !== 'string' || user === '') return await reply.code(400).send({ error: 'body must be {"user": "<name>"}' })
    // A new id at login: an id planted in the browser before is worthless now.
    await request.session.regenerate()
    request.session.set('userId', user)
    return { user }
  })

  app.post('/counter', async (request) => {
    const views = (request.session.get('views') ?? 0) + 1
    request.session.set('views', views)
    return { views }
  })

  app.post('/logout', async (request) => {
    // Deletes the data in memcached: the old cookie is dead even if stolen.
    await request.session.destroy()
    return { user: null }
  })

  app.get('/health', { config: { session: false } }, async () => ({ ok: true }))

  const shutdown = (): void => {
    void app.close().finally(() => { store.stop(); process.exit(0) })
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
