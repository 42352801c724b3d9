/**
 * The parent's side of host.ts: starts one process per client, pinned to the
 * measured core, and asks it for one thing at a time.
 */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { spawnPinned, stopChild } from '../lib/processes.js'
import type { Operation } from './drivers.js'
import type { HostReply, HostRequest } from './workload.js'

const HOST_SCRIPT = path.join(__dirname, 'host.js')
const START_TIMEOUT_MS = 15_000
/** Beyond a window's own length: room for the drain after it. */
const ANSWER_SLACK_MS = 30_000

export class ClientHost {
  private constructor (
    private readonly child: ChildProcess,
    readonly id: string,
    readonly label: string,
    readonly note: string | undefined,
    readonly ops: ReadonlySet<Operation>
  ) {}

  /**
   * Starts the host of client `id` (or of the ceiling) against memcached at
   * `host:port`; with `heapMb`, a host that first holds that much of an app's heap.
   */
  static async start (id: string, host: string, port: number, core: number | undefined, heapMb = 0): Promise<ClientHost> {
    const child = spawnPinned(core, process.execPath, [HOST_SCRIPT, id, host, String(port), String(heapMb)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const reply = await nextReply(child, START_TIMEOUT_MS + heapMb * 200).catch(async (error: unknown) => {
      await stopChild(child)
      throw error
    })
    if (reply.type !== 'ready') {
      await stopChild(child)
      throw new Error(`client ${id}: ${reply.type === 'failed' ? reply.message : 'no ready message'}`)
    }
    return new ClientHost(child, id, reply.label, reply.note, new Set(reply.ops))
  }

  get pid (): number | undefined { return this.child.pid }

  /** Sends one request and waits for its answer; a `failed` answer rejects. */
  async ask (request: HostRequest, timeoutMs: number): Promise<HostReply> {
    const reply = nextReply(this.child, timeoutMs + ANSWER_SLACK_MS)
    this.child.send(request)
    const answer = await reply
    if (answer.type === 'failed') throw new Error(`${this.label}: ${answer.message}`)
    return answer
  }

  /** Lets the host close its client and exit; stops it by pid if it has not within `graceMs`. */
  async stop (graceMs = 2000): Promise<void> {
    const child = this.child
    if (child.exitCode === null && child.signalCode === null && child.connected) {
      const exited = once(child, 'exit')
      child.disconnect()
      let timer: NodeJS.Timeout | undefined
      await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, graceMs) })])
      clearTimeout(timer)
    }
    await stopChild(child)
  }
}

async function nextReply (child: ChildProcess, timeoutMs: number): Promise<HostReply> {
  return await new Promise<HostReply>((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`client host: no answer within ${timeoutMs} ms`)) }, timeoutMs)
    const onMessage = (message: HostReply): void => { cleanup(); resolve(message) }
    const onExit = (): void => { cleanup(); reject(new Error('client host exited')) }
    const cleanup = (): void => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.once('message', onMessage)
    child.once('exit', onExit)
  })
}
