// Starts real twemproxy (nutcracker) processes for the tests, in front of
// MemcachedServer backends, on free 127.0.0.1 ports (its stats port too), and
// stops exactly the processes it started, by pid.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { findBinary, killOnExit } from './binaries.js'
import { canConnect, freePort } from './ports.js'

const INSTALL_HINT = 'nutcracker (twemproxy) is not installed. Install it with: sudo apt-get update && sudo apt-get install -y nutcracker ' +
  '(macOS: brew install twemproxy), or run `npm run setup`.'

function nutcrackerBinary (): string {
  return findBinary(['nutcracker'], ['/usr/sbin/nutcracker', '/usr/local/sbin/nutcracker', '/usr/local/bin/nutcracker'], INSTALL_HINT)
}

/** How twemproxy hashes keys; only `md5` with ketama places them as this client (and libmemcached) does. */
export type TwemproxyHash = 'md5' | 'fnv1a_64'

export interface TwemproxyOptions {
  /** Backends as `host:port` (weight 1) or `host:port:weight`. */
  backends: readonly string[]
  /** Default `md5`. */
  hash?: TwemproxyHash
  /** ms twemproxy waits for a backend to connect or answer before it answers SERVER_ERROR. Default 1000. */
  timeout?: number
  /** Consecutive failures before a backend is ejected (auto_eject_hosts is on). Default 2. */
  serverFailureLimit?: number
  /** ms an ejected backend stays out before twemproxy tries it again. Default 500. */
  serverRetryTimeout?: number
}

/** One nutcracker process owned by a test: one pool, `hash` + ketama, auto_eject_hosts. */
export class TwemproxyServer {
  readonly host = '127.0.0.1'
  private child: ChildProcess | undefined
  private log = ''

  private constructor (readonly port: number, private readonly statsPort: number, private readonly dir: string) {}

  /** `host:port`, as the client's `servers` option takes it. */
  get address (): string { return `${this.host}:${this.port}` }
  get pid (): number | undefined { return this.child?.pid }

  /** The YAML of one pool listening on `port` in front of `options.backends`. */
  static config (port: number, options: TwemproxyOptions): string {
    const backends = options.backends.map((backend) => `    - ${backend.split(':').length === 2 ? `${backend}:1` : backend}`)
    return [
      'pool:',
      `  listen: 127.0.0.1:${port}`,
      `  hash: ${options.hash ?? 'md5'}`,
      '  distribution: ketama',
      '  auto_eject_hosts: true',
      `  server_failure_limit: ${options.serverFailureLimit ?? 2}`,
      `  server_retry_timeout: ${options.serverRetryTimeout ?? 500}`,
      `  timeout: ${options.timeout ?? 1000}`,
      '  servers:',
      ...backends,
      ''
    ].join('\n')
  }

  static async start (options: TwemproxyOptions): Promise<TwemproxyServer> {
    const binary = nutcrackerBinary()
    for (let attempt = 0; ; attempt++) {
      const dir = mkdtempSync(path.join(tmpdir(), 'twemproxy-test-'))
      const server = new TwemproxyServer(await freePort(), await freePort(), dir)
      try {
        await server.spawn(binary, options)
        return server
      } catch (error) {
        rmSync(dir, { recursive: true, force: true })
        if (attempt >= 4) throw error
      }
    }
  }

  private async spawn (binary: string, options: TwemproxyOptions): Promise<void> {
    const config = path.join(this.dir, 'nutcracker.yml')
    const logFile = path.join(this.dir, 'nutcracker.log')
    writeFileSync(config, TwemproxyServer.config(this.port, options))
    const args = ['-c', config, '-s', String(this.statsPort), '-a', '127.0.0.1', '-o', logFile, '-p', path.join(this.dir, 'nutcracker.pid')]
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr?.on('data', (chunk: Buffer) => { this.log += chunk.toString() })
    killOnExit(child)
    this.child = child
    child.once('exit', () => { if (this.child === child) this.child = undefined })
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      if (this.child !== child) throw new Error(`nutcracker exited at start: ${this.output(logFile)}`)
      if (await canConnect(this.port)) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await this.stop()
    throw new Error(`nutcracker did not listen on ${this.address} within 5 s: ${this.output(logFile)}`)
  }

  private output (logFile: string): string {
    const logged = existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''
    return `${this.log}${logged}`.trim().split('\n').slice(-5).join('\n')
  }

  /** Stops the process (SIGTERM), waits for it to exit, and removes its files. */
  async stop (): Promise<void> {
    const child = this.child
    if (child !== undefined) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}
