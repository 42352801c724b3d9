/**
 * The child processes of an HTTP measurement: a variant's app
 * (server.ts) and the load generator (load.ts), each pinned to its core,
 * and the sessions the load rotates over. Used by the suite and by the
 * HTTP A/B (ab.ts).
 */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { spawnPinned, stopChild } from '../lib/processes.js'
import type { LoadJob, LoadResult } from './load.js'
import type { ServerMessage } from './server.js'
import type { Backends, Variant } from './variants.js'

const BUILD_DIR = path.resolve(__dirname)

export interface RunningServer {
  variant: Variant
  child: ChildProcess
  port: number
  cookies: string[]
}

/** Starts `variant`'s app; `script`: another build's server.js (the HTTP A/B's `--a-build`). */
export async function startServer (variant: Variant, backends: Backends, core: number | undefined, script = path.join(BUILD_DIR, 'server.js')): Promise<RunningServer> {
  const child = spawnPinned(core, process.execPath, [script, variant.id, backends.memcached ?? '-', backends.redis ?? '-'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const message = await Promise.race([
    once(child, 'message') as Promise<[ServerMessage]>,
    once(child, 'exit').then(() => [{ type: 'error', message: 'exited before listening' }] as [ServerMessage]),
    new Promise<[ServerMessage]>((resolve) => setTimeout(() => resolve([{ type: 'error', message: 'not listening within 15 s' }]), 15_000).unref())
  ])
  const [reply] = message
  if (reply.type !== 'ready' || reply.port === undefined) {
    await stopChild(child)
    throw new Error(`${variant.label}: ${reply.message ?? 'failed'}`)
  }
  return { variant, child, port: reply.port, cookies: [] }
}

/** Makes `count` sessions with one request each, and checks a cookie is honoured. */
export async function createSessions (server: RunningServer, count: number): Promise<string[]> {
  const name = server.variant.cookieName
  const base = `http://127.0.0.1:${server.port}`
  if (name === undefined) {
    // The ceiling gets cookie headers of the same size, which it ignores.
    return Array.from({ length: count }, (_, i) => `sid=${'x'.repeat(43)}.${String(i).padStart(43, '0')}`)
  }
  const cookies: string[] = []
  for (let i = 0; i < count; i++) {
    const response = await fetch(`${base}/rw`)
    await response.arrayBuffer()
    const cookie = response.headers.getSetCookie().find((line) => line.startsWith(`${name}=`))
    if (response.status !== 200 || cookie === undefined) throw new Error(`${server.variant.label}: no ${name} cookie (status ${response.status})`)
    cookies.push(cookie.split(';', 1)[0] as string)
  }
  const check = await fetch(`${base}/rw`, { headers: { cookie: cookies[0] as string } })
  const body = await check.json() as { n?: number }
  if (check.status !== 200 || (body.n ?? 0) < 2) throw new Error(`${server.variant.label}: the session cookie was not honoured (${JSON.stringify(body)})`)
  return cookies
}

/** The load generator child and its one-job-at-a-time protocol. */
export class LoadGenerator {
  private nextId = 1

  private constructor (private readonly child: ChildProcess) {}

  static async start (core: number | undefined): Promise<LoadGenerator> {
    const child = spawnPinned(core, process.execPath, [path.join(BUILD_DIR, 'load.js')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(() => { throw new Error('load generator exited at start') })
    ])
    return new LoadGenerator(child)
  }

  get pid (): number | undefined { return this.child.pid }

  async run (job: Omit<LoadJob, 'type' | 'id'>): Promise<LoadResult> {
    const id = this.nextId++
    const answer = new Promise<LoadResult>((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error('load generator: no result within 60 s')) }, 60_000)
      const onMessage = (message: LoadResult): void => {
        if (message.type === 'result' && message.id === id) { cleanup(); resolve(message) }
      }
      const onExit = (): void => { cleanup(); reject(new Error('load generator exited')) }
      const cleanup = (): void => { clearTimeout(timer); this.child.off('message', onMessage); this.child.off('exit', onExit) }
      this.child.on('message', onMessage)
      this.child.once('exit', onExit)
    })
    this.child.send({ type: 'run', id, ...job } satisfies LoadJob)
    return await answer
  }

  async stop (): Promise<void> {
    await stopChild(this.child)
  }
}
