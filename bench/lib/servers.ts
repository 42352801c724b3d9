/**
 * The data servers the bench measures against: one memcached (and a
 * redis-server when one is installed), on free 127.0.0.1 ports, pinned to the
 * load core, stopped by pid.
 */
import type { ChildProcess } from 'node:child_process'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { TwemproxyServer } from '../../test/helpers/twemproxy.js'
import { findCommand, freePort, spawnPinned, stopChild, waitForPort } from './processes.js'

/** A server process the bench started. */
export interface ServerProcess {
  readonly name: string
  readonly port: number
  /** `127.0.0.1:port`. */
  readonly address: string
  readonly pid: number | undefined
  stop (): Promise<void>
}

async function startPinned (name: string, core: number | undefined, binary: string, args: (port: number) => string[]): Promise<ServerProcess> {
  let lastError = ''
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const child: ChildProcess = spawnPinned(core, binary, args(port), { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    if (await waitForPort(child, port, 5000)) {
      return { name, port, address: `127.0.0.1:${port}`, pid: child.pid, stop: async () => await stopChild(child) }
    }
    await stopChild(child)
    lastError = stderr.trim()
  }
  throw new Error(`${name} did not start: ${lastError}`)
}

export const MEMCACHED_BINARY: string | undefined = findCommand('memcached')
export const REDIS_BINARY: string | undefined = findCommand('redis-server')

/** Starts memcached with 256 MiB of memory and room for many connections. */
export async function startMemcached (core: number | undefined): Promise<ServerProcess> {
  if (MEMCACHED_BINARY === undefined) throw new Error('memcached is not installed (apt-get install memcached, or npm run setup)')
  const binary = MEMCACHED_BINARY
  return await startPinned('memcached', core, binary, (port) => {
    const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '256', '-c', '4096']
    if (process.getuid?.() === 0) args.push('-u', 'root')
    return args
  })
}

/** Starts redis-server without persistence; only called when {@link REDIS_BINARY} exists. */
export async function startRedis (core: number | undefined): Promise<ServerProcess> {
  if (REDIS_BINARY === undefined) throw new Error('redis-server not found')
  const binary = REDIS_BINARY
  return await startPinned('redis-server', core, binary, (port) =>
    ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'])
}

/** nutcracker (twemproxy); Debian installs it in /usr/sbin, which a PATH may lack. */
export const NUTCRACKER_BINARY: string | undefined = findCommand('nutcracker') ?? ['/usr/sbin/nutcracker', '/usr/local/sbin/nutcracker'].find((candidate) => existsSync(candidate))

/**
 * Starts twemproxy in front of `backend` with the tests' pool configuration
 * (test/helpers/twemproxy.ts: md5 + ketama, the placement our client uses),
 * but pinned like memcached and stopped with the bench's other processes.
 * Its config lives in a temporary directory removed when it stops.
 */
export async function startTwemproxy (core: number | undefined, backend: string): Promise<ServerProcess> {
  if (NUTCRACKER_BINARY === undefined) throw new Error('nutcracker (twemproxy) is not installed: apt-get install -y nutcracker (macOS: brew install twemproxy), or npm run setup')
  const binary = NUTCRACKER_BINARY
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-twemproxy-'))
  try {
    const stats = await freePort()
    const proxy = await startPinned('nutcracker', core, binary, (port) => {
      const config = path.join(dir, `nutcracker-${port}.yml`)
      writeFileSync(config, TwemproxyServer.config(port, { backends: [backend], timeout: 5000 }))
      return ['-c', config, '-s', String(stats), '-a', '127.0.0.1', '-o', path.join(dir, 'nutcracker.log'), '-p', path.join(dir, 'nutcracker.pid')]
    })
    return { ...proxy, stop: async () => { await proxy.stop(); rmSync(dir, { recursive: true, force: true }) } }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

/** `nutcracker -V` -> `0.5.0`. */
export function nutcrackerVersion (): string {
  if (NUTCRACKER_BINARY === undefined) return 'not installed'
  const out = spawnSync(NUTCRACKER_BINARY, ['-V'], { encoding: 'utf8' })
  return /nutcracker-(\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown'
}

/** `memcached -V` -> `1.6.18`. */
export function memcachedVersion (): string {
  if (MEMCACHED_BINARY === undefined) return 'not installed'
  const out = spawnSync(MEMCACHED_BINARY, ['-V'], { encoding: 'utf8' }).stdout.trim()
  return out.replace(/^memcached\s+/, '')
}

/** `redis-server --version` -> `7.0.15`, or undefined when not installed. */
export function redisVersion (): string | undefined {
  if (REDIS_BINARY === undefined) return undefined
  const out = spawnSync(REDIS_BINARY, ['--version'], { encoding: 'utf8' }).stdout
  return /v=(\S+)/.exec(out)?.[1] ?? out.trim()
}
