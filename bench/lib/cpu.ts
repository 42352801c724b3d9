/**
 * Other people's CPU: this machine is shared (other sessions compile and run
 * tests), so every measured window also measures how much CPU went to
 * processes the bench did not start. A window disturbed by too much of it is
 * measured again (a bounded number of times) and flagged in the results.
 * Linux only (/proc); elsewhere nothing is measured and nothing is retried.
 */
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { childPids } from './processes.js'

/** Kernel clock ticks per second of /proc times (USER_HZ; 100 on Linux). */
const TICKS = 100
/** Foreign CPU, in cores, above which a window counts as disturbed. */
export const DISTURBED_CORES = 0.15

interface Snapshot {
  at: number
  /** Busy ticks of the whole machine. */
  busy: number
  /** Ticks of this process and every child the bench started. */
  own: number
}

function machineBusyTicks (): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? ''
  // cpu user nice system idle iowait irq softirq steal ...: irq and softirq
  // time is left out (loopback traffic is ours but not charged to our pids);
  // steal is in (the hypervisor gave our cores to someone else).
  const fields = line.trim().split(/\s+/).slice(1).map(Number)
  return (fields[0] ?? 0) + (fields[1] ?? 0) + (fields[2] ?? 0) + (fields[7] ?? 0)
}

/** CPU seconds used so far by process `pid` (user + system); NaN when unknown. */
export function processCpuSeconds (pid: number | undefined): number {
  if (pid === undefined || !isAvailable()) return NaN
  return processTicks(pid) / TICKS
}

function processTicks (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

let available: boolean | undefined

function isAvailable (): boolean {
  if (available === undefined) {
    try {
      machineBusyTicks()
      available = true
    } catch {
      available = false
    }
  }
  return available
}

function snapshot (pids: readonly number[]): Snapshot {
  return {
    at: performance.now(),
    busy: machineBusyTicks(),
    own: pids.reduce((sum, pid) => sum + processTicks(pid), 0)
  }
}

/** Measures the foreign CPU of one window: call `stop()` when it ends. */
export function watchForeignCpu (): { stop (): number } {
  if (!isAvailable()) return { stop: () => NaN }
  // The children alive now are the ones that matter for this window.
  const pids = [process.pid, ...childPids()]
  const start = snapshot(pids)
  return {
    stop: () => {
      const end = snapshot(pids)
      const seconds = (end.at - start.at) / 1000
      const foreignTicks = Math.max(0, (end.busy - start.busy) - (end.own - start.own))
      return seconds > 0 ? foreignTicks / TICKS / seconds : NaN
    }
  }
}

/**
 * The samples a median should use: those whose window was not disturbed by
 * other processes, when at least two are; otherwise all of them.
 */
export function undisturbed<T extends { foreignCores: number }> (samples: readonly T[]): T[] {
  const clean = samples.filter((s) => !(s.foreignCores > DISTURBED_CORES))
  return clean.length >= 2 ? clean : [...samples]
}

/**
 * How much time re-measuring may still take in a suite: disturbed windows
 * are measured again (after waiting for the machine to go quiet) only while
 * this lasts, so the run's length stays bounded.
 */
export class RetryBudget {
  /** Windows measured again so far. */
  used = 0
  private spentMs = 0

  constructor (readonly perSample: number, private readonly budgetMs: number) {}

  get remainingMs (): number { return Math.max(0, this.budgetMs - this.spentMs) }

  charge (ms: number): void { this.spentMs += ms }
}

export interface Guarded<T> {
  result: T
  /** Foreign CPU during the kept attempt, cores (NaN when unknown). */
  foreignCores: number
  attempts: number
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Waits until other processes use less than the threshold over 200 ms, at most `maxMs`. */
export async function waitForQuiet (maxMs: number): Promise<boolean> {
  const deadline = performance.now() + maxMs
  while (performance.now() < deadline) {
    const watch = watchForeignCpu()
    await sleep(200)
    const cores = watch.stop()
    if (!(cores > DISTURBED_CORES)) return true
  }
  return false
}

/**
 * Runs `measure`; while the window was disturbed by foreign CPU and the
 * budget allows, waits for a quiet machine and runs it again. Keeps the last
 * attempt.
 */
export async function guarded<T> (measure: () => Promise<T>, budget: RetryBudget, onRetry: (foreignCores: number) => void): Promise<Guarded<T>> {
  for (let attempt = 1; ; attempt++) {
    const started = performance.now()
    const watch = watchForeignCpu()
    const result = await measure()
    const foreignCores = watch.stop()
    if (attempt > 1) budget.charge(performance.now() - started)
    const disturbed = foreignCores > DISTURBED_CORES
    if (!disturbed || attempt > budget.perSample || budget.remainingMs <= 0) return { result, foreignCores, attempts: attempt }
    onRetry(foreignCores)
    budget.used++
    const waitStarted = performance.now()
    await waitForQuiet(Math.min(3000, budget.remainingMs))
    budget.charge(performance.now() - waitStarted)
  }
}
