/**
 * Child processes of the bench: every one is started here, pinned to a core
 * when `taskset` exists, remembered by pid and stopped by pid, also on
 * Ctrl-C, on an error and on exit.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { canConnect, freePort } from '../../test/helpers/ports.js'

const children = new Set<ChildProcess>()

/** The path of a command on PATH, or undefined when it is not installed. */
export function findCommand (name: string): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v "$0"', name], { encoding: 'utf8' })
  const path = found.stdout.trim()
  return found.status === 0 && path !== '' ? path : undefined
}

/** `taskset` when it exists and this machine has at least two cores to pin to. */
export const TASKSET: string | undefined = findCommand('taskset')

/**
 * Pins every thread of this process to `core` (threads started later inherit
 * it). Returns whether it worked.
 */
export function pinSelf (core: number): boolean {
  if (TASKSET === undefined) return false
  return spawnSync(TASKSET, ['-a', '-cp', String(core), String(process.pid)], { stdio: 'ignore' }).status === 0
}

/** Starts `command` on `core` (when taskset exists) and remembers it until it exits. */
export function spawnPinned (core: number | undefined, command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const child = TASKSET !== undefined && core !== undefined
    ? spawn(TASKSET, ['-c', String(core), command, ...args], options)
    : spawn(command, args, options)
  children.add(child)
  child.once('exit', () => children.delete(child))
  // A spawn error is reported by whoever waits for the child; this keeps it from crashing the bench.
  child.on('error', () => children.delete(child))
  return child
}

/** Stops one child by pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild (child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/** Pids of the children still running. */
export function childPids (): number[] {
  return [...children].flatMap((child) => child.pid === undefined ? [] : [child.pid])
}

/** Kills every child still running, by pid, at once (exit paths). */
export function killAll (): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
}

process.on('exit', killAll)

export { canConnect, freePort }

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Waits until `port` accepts connections or `child` exits; at most `timeoutMs`. */
export async function waitForPort (child: ChildProcess, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false
    if (await canConnect(port)) return true
    await sleep(20)
  }
  return false
}
