// Runs the example app (examples/app.ts, compiled) as a child process on a
// free 127.0.0.1 port, as `npm run example` would, and stops it by pid.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { freePort } from './ports.js'

// The compiled tests run from build/test/helpers; the compiled app is build/examples/app.js.
const APP = path.join(__dirname, '..', '..', 'examples', 'app.js')
const READY_WITHIN_MS = 20_000
const STOP_WITHIN_MS = 5_000

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** The app's environment: SESSION_SECRET, MEMCACHED_SERVERS, SESSION_MAX_AGE… (PORT is set by the helper). */
export type ExampleEnv = Record<string, string>

/** One run of the example app. */
export class ExampleApp {
  private output = ''

  private constructor (readonly port: number, private readonly child: ChildProcess) {
    const record = (chunk: Buffer): void => { this.output = (this.output + chunk.toString()).slice(-20_000) }
    child.stdout?.on('data', record)
    child.stderr?.on('data', record)
  }

  /** `http://127.0.0.1:<port>` */
  get url (): string { return `http://127.0.0.1:${this.port}` }

  /** The last 20 KB the app printed, for failure messages. */
  get log (): string { return this.output }

  /** Starts the app and resolves once GET /health answers; `port` reuses an address (a restart). */
  static async start (env: ExampleEnv, port?: number): Promise<ExampleApp> {
    const chosen = port ?? await freePort()
    const child = spawn(process.execPath, [APP], {
      env: { ...process.env, ...env, PORT: String(chosen) },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    running.add(child)
    child.once('exit', () => running.delete(child))
    const app = new ExampleApp(chosen, child)
    await app.ready()
    return app
  }

  private async ready (): Promise<void> {
    const deadline = Date.now() + READY_WITHIN_MS
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`the example app exited at start (${this.child.exitCode ?? this.child.signalCode ?? ''}):\n${this.output}`)
      }
      const healthy = await fetch(`${this.url}/health`).then((response) => response.ok, () => false)
      if (healthy) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await this.stop()
    throw new Error(`the example app did not answer on ${this.url} within ${READY_WITHIN_MS} ms:\n${this.output}`)
  }

  /** SIGTERM (the app closes Fastify and its client), then waits for the exit; SIGKILL if it hangs. */
  async stop (): Promise<void> {
    const child = this.child
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_WITHIN_MS)
    await exited
    clearTimeout(timer)
  }
}
