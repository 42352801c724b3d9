// Makes sure the test suite can start real memcached processes (and openssl
// for the TLS tests). Installs them with the system's package manager when it
// can; otherwise fails at once with the exact command to run. Never skips.
import { execFileSync, spawnSync } from 'node:child_process'
import process from 'node:process'

const tools = ['memcached', 'openssl']

function has (binary) {
  return spawnSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' }).status === 0
}

function run (command, args) {
  console.log(`[setup] ${command} ${args.join(' ')}`)
  execFileSync(command, args, { stdio: 'inherit' })
}

const missing = tools.filter((tool) => !has(tool))
if (missing.length === 0) process.exit(0)

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
console.log(`[setup] the tests need ${missing.join(' and ')}, which this machine lacks`)
try {
  if (process.platform === 'linux' && isRoot && has('apt-get')) {
    run('apt-get', ['update'])
    run('apt-get', ['install', '-y', ...missing])
  } else if (process.platform === 'darwin' && has('brew')) {
    run('brew', ['install', ...missing])
  }
} catch (error) {
  console.error(`[setup] install failed: ${error.message}`)
}

const stillMissing = tools.filter((tool) => !has(tool))
if (stillMissing.length > 0) {
  const hint = process.platform === 'darwin'
    ? `brew install ${stillMissing.join(' ')}`
    : `sudo apt-get update && sudo apt-get install -y ${stillMissing.join(' ')}`
  console.error(`[setup] ${stillMissing.join(' and ')} not found. Install with:\n\n    ${hint}\n`)
  process.exit(1)
}
