/**
 * Child process: one variant's Fastify app on 127.0.0.1, a free port. Tells
 * the parent its port over IPC; closes the app on SIGTERM or disconnect.
 *
 *   node build/bench/http/server.js <variant> <memcached host:port|-> <redis host:port|->
 */
import Fastify from 'fastify'
import { VARIANTS, buildApp, type VariantId } from './variants.js'

export interface ServerMessage {
  type: 'ready' | 'error'
  port?: number
  message?: string
}

async function main (): Promise<void> {
  const [id, memcached, redis] = process.argv.slice(2)
  const variant = VARIANTS.find((candidate) => candidate.id === id)
  if (variant === undefined) throw new Error(`unknown variant ${String(id)}`)
  const app = Fastify({ logger: false })
  await buildApp(app, variant.id as VariantId, {
    memcached: memcached === undefined || memcached === '-' ? undefined : memcached,
    redis: redis === undefined || redis === '-' ? undefined : redis
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  let closing = false
  const close = (): void => {
    if (closing) return
    closing = true
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGTERM', close)
  process.once('disconnect', close)
  process.send?.({ type: 'ready', port: address.port } satisfies ServerMessage)
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.stack ?? error.message : String(error)
  process.send?.({ type: 'error', message } satisfies ServerMessage)
  process.exitCode = 1
  setTimeout(() => process.exit(1), 100)
})
