/**
 * The callers of a floor's commands in flight, oldest first: memcached
 * answers in request order, so each reply settles the oldest. Two arrays and
 * a head index, compacted now and then: no object per caller beyond its
 * promise.
 */
import { Buffer } from 'node:buffer'

export class CallerQueue {
  private readonly resolvers: Array<(value: Buffer | undefined) => void> = []
  private readonly rejecters: Array<(error: Error) => void> = []
  private head = 0

  /** Callers waiting. */
  get size (): number {
    return this.resolvers.length - this.head
  }

  /** A new caller, last in line: the caller's own promise, no async wrapper around it. */
  add (): Promise<Buffer | undefined> {
    return new Promise<Buffer | undefined>((resolve, reject) => {
      this.resolvers.push(resolve)
      this.rejecters.push(reject)
    })
  }

  /** Settles the oldest caller: rejects it with `error` when there is one, else resolves it with `value`. */
  settle (value: Buffer | undefined, error?: Error): void {
    const index = this.head++
    const resolve = this.resolvers[index] as (value: Buffer | undefined) => void
    const reject = this.rejecters[index] as (error: Error) => void
    if (this.head > 1024 && this.head * 2 > this.resolvers.length) {
      this.resolvers.splice(0, this.head)
      this.rejecters.splice(0, this.head)
      this.head = 0
    }
    if (error === undefined) resolve(value)
    else reject(error)
  }
}
