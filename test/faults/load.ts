// A bounded HTTP load generator and a log recorder for the fault tests: real
// sockets against a listening Fastify, a fixed number of requests, each
// worker owning its sessions so that no two requests of one session overlap
// (their counters then tell exactly whether a write was lost).
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { Writable } from 'node:stream'

/** One response as the load generator saw it. */
export interface Outcome {
  /** Index of the session the request carried. */
  session: number
  status: number
  /** Round trip, ms. */
  ms: number
  /** When the request was sent, performance.now() ms. */
  start: number
  /** `views` from a 200 body. */
  views: number | undefined
  /** The response issued a new session cookie. */
  renewed: boolean
}

export interface LoadOptions {
  port: number
  /** Cookie values (`<id>.<signature>`), one per session; replaced when a response issues a new one. */
  cookies: string[]
  /** Requests in all. */
  total: number
  /** Requests in flight at once (workers). */
  concurrency: number
  /** Pause of each worker between two requests, ms, to spread the load over time. */
  paceMs: number
}

/** POSTs `/count` with the sessions' cookies, `total` times, `concurrency` at a time. */
export class LoadGenerator {
  readonly results: Outcome[] = []
  /** Requests sent so far. */
  issued = 0
  private readonly agent: http.Agent

  constructor (private readonly options: LoadOptions) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency })
  }

  async run (): Promise<Outcome[]> {
    const { concurrency, cookies } = this.options
    try {
      await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
        // Worker w owns sessions w, w + concurrency, ...: one request per session at a time.
        const mine = cookies.map((_, i) => i).filter((i) => i % concurrency === worker)
        for (let turn = 0; this.issued < this.options.total; turn++) {
          this.issued++
          await this.one(mine[turn % mine.length] as number)
          await new Promise((resolve) => setTimeout(resolve, this.options.paceMs))
        }
      }))
    } finally {
      this.agent.destroy()
    }
    return this.results
  }

  private async one (session: number): Promise<void> {
    const start = performance.now()
    const response = await post(this.options.port, '/count', this.options.cookies[session] as string, this.agent)
    const cookie = /^sid=([^;]+)/.exec(response.setCookie ?? '')?.[1]
    if (cookie !== undefined) this.options.cookies[session] = cookie
    const views = response.status === 200 ? (JSON.parse(response.body) as { views: number }).views : undefined
    this.results.push({ session, status: response.status, ms: performance.now() - start, start, views, renewed: cookie !== undefined })
  }
}

/** One POST over `agent`; resolves with the status, body and session Set-Cookie. */
export async function post (port: number, path: string, cookie: string | undefined, agent?: http.Agent): Promise<{ status: number, body: string, setCookie: string | undefined }> {
  return await new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { 'content-length': '0' }
    if (cookie !== undefined) headers.cookie = `sid=${cookie}`
    const request = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      response.on('end', () => {
        const header = response.headers['set-cookie']?.find((line) => line.startsWith('sid='))
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString(), setCookie: header })
      })
      response.on('error', reject)
    })
    request.on('error', reject)
    request.end()
  })
}

/** A pino log line as the tests read it. */
export interface LogEntry {
  level: number
  time: number
  msg: string
  err?: { code?: string, message?: string }
  [field: string]: unknown
}

/** A pino destination keeping every line, parsed. */
export class LogRecorder extends Writable {
  readonly entries: LogEntry[] = []

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line !== '') this.entries.push(JSON.parse(line) as LogEntry)
    }
    callback()
  }

  /** Entries at `level` or above (pino: 40 warn, 50 error, 60 fatal). */
  atLeast (level: number): LogEntry[] {
    return this.entries.filter((entry) => entry.level >= level)
  }
}
