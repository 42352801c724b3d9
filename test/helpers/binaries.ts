// What the helpers that start real programs share: finding the binary (or
// failing loudly with the install command, never skipping) and making sure
// no child they started outlives the test process.
import { spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'

/**
 * The first of `names` on PATH, else the first of `paths` that exists (Debian
 * puts some daemons in /usr/sbin, which a user's PATH may lack).
 *
 * @throws Error with `installHint` when none is found
 */
export function findBinary (names: readonly string[], paths: readonly string[], installHint: string): string {
  for (const name of names) {
    const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
    const path = found.stdout.trim()
    if (found.status === 0 && path !== '') return path
  }
  const known = paths.find((candidate) => existsSync(candidate))
  if (known === undefined) throw new Error(installHint)
  return known
}

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** Kills `child` (by its pid) if it is still running when the test process exits. */
export function killOnExit (child: ChildProcess): void {
  running.add(child)
  child.once('exit', () => { running.delete(child) })
}
