// Starts real memcached processes on free 127.0.0.1 ports for the tests, and
// stops exactly the processes it started, by pid.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { findBinary, killOnExit } from './binaries.js'
import { canConnect, freePort } from './ports.js'

export { freePort }

const INSTALL_HINT = 'memcached is not installed. Install it with: sudo apt-get update && sudo apt-get install -y memcached ' +
  '(macOS: brew install memcached), or run `npm run setup`.'

function memcachedBinary (): string {
  return findBinary(['memcached'], [], INSTALL_HINT)
}

export interface MemcachedOptions {
  /** Extra command-line arguments, e.g. `['-I', '2m']`. */
  args?: string[]
  /** Serve TLS with this certificate chain and key (paths). */
  tls?: { cert: string, key: string }
  /** Use this port instead of a free one (to restart on the same address). */
  port?: number
}

/** One memcached process owned by a test. */
export class MemcachedServer {
  readonly host = '127.0.0.1'
  private child: ChildProcess | undefined

  private constructor (readonly port: number, private readonly options: MemcachedOptions) {}

  /** `host:port`, as the client's `servers` option takes it. */
  get address (): string { return `${this.host}:${this.port}` }
  get pid (): number | undefined { return this.child?.pid }
  get running (): boolean { return this.child !== undefined }

  static async start (options: MemcachedOptions = {}): Promise<MemcachedServer> {
    for (let attempt = 0; ; attempt++) {
      const port = options.port ?? await freePort()
      const server = new MemcachedServer(port, options)
      try {
        await server.spawn()
        return server
      } catch (error) {
        if (options.port !== undefined || attempt >= 4) throw error
      }
    }
  }

  private commandLine (): string[] {
    const args = ['-l', this.host, '-p', String(this.port), '-U', '0', '-m', '64', '-c', '4096']
    if (process.getuid?.() === 0) args.push('-u', 'root')
    if (this.options.tls !== undefined) {
      args.push('-Z', '-o', `ssl_chain_cert=${this.options.tls.cert},ssl_key=${this.options.tls.key}`)
    }
    return [...args, ...(this.options.args ?? [])]
  }

  private async spawn (): Promise<void> {
    const child = spawn(memcachedBinary(), this.commandLine(), { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    killOnExit(child)
    this.child = child
    child.once('exit', () => { if (this.child === child) this.child = undefined })
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      if (this.child !== child) throw new Error(`memcached exited at start: ${stderr.trim()}`)
      if (await canConnect(this.port)) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await this.stop()
    throw new Error(`memcached did not listen on ${this.address} within 5 s: ${stderr.trim()}`)
  }

  /** Stops the process gracefully and waits for it to exit. */
  async stop (): Promise<void> {
    await this.signal('SIGTERM')
  }

  /** `kill -9`: the process dies at once, sockets reset. */
  async kill (): Promise<void> {
    await this.signal('SIGKILL')
  }

  private async signal (signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (child === undefined) return
    const exited = once(child, 'exit')
    child.kill(signal)
    await exited
  }

  /** Starts it again on the same port (after {@link stop} or {@link kill}). */
  async restart (): Promise<void> {
    await this.stop()
    await this.spawn()
  }
}
