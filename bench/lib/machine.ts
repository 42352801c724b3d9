/** What the numbers were measured on, printed and stored with every result. */
import os from 'node:os'
import { TASKSET } from './processes.js'
import { memcachedVersion, redisVersion } from './servers.js'

/** Cores the measured process and the load (memcached, autocannon) run on. */
export interface Pinning {
  /** The process being measured: the clients, or the Fastify app. */
  measured: number | undefined
  /** memcached, redis-server and the HTTP load generator. */
  load: number | undefined
  /** One line for humans. */
  description: string
}

export interface Machine {
  cores: number
  cpu: string
  memoryGiB: number
  os: string
  node: string
  memcached: string
  redis: string
  pinning: Pinning
}

/** Pins to cores 0 and 1 when `taskset` exists and there are two cores or more. */
/** Cores of the machine (not of this process's affinity mask, which pinning narrows). */
function machineCores (): number {
  return os.cpus().length
}

export function choosePinning (): Pinning {
  const cores = machineCores()
  if (TASKSET === undefined) {
    return { measured: undefined, load: undefined, description: 'not pinned: taskset not found' }
  }
  if (cores < 2) {
    return { measured: undefined, load: undefined, description: 'not pinned: only one core' }
  }
  return {
    measured: 0,
    load: 1,
    description: 'taskset: measured process on core 0; memcached and the load generator on core 1'
  }
}

export function describeMachine (pinning: Pinning): Machine {
  const cpus = os.cpus()
  return {
    cores: machineCores(),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    memcached: memcachedVersion(),
    redis: redisVersion() ?? 'redis-server not found',
    pinning
  }
}

/** One line: `2 cores, Intel(R) Xeon(R) Processor, Node v20.20.2, memcached 1.6.18`. */
export function machineLine (machine: Machine): string {
  return `${machine.cores} cores, ${machine.cpu}, ${machine.memoryGiB} GiB, ${machine.os}, Node ${machine.node}, memcached ${machine.memcached}`
}
