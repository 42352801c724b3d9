// Makes sure the test suite can start real memcached and twemproxy
// (nutcracker) processes, has openssl for the TLS tests and Chromium for the
// browser test (driven by playwright-core, which downloads no browser of its
// own). Installs what is
// missing with the system's package manager when it can; otherwise fails at
// once with the exact command to run. Never skips.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import process from 'node:process'

/** Each binary the tests run, and the package that provides it (apt, brew). */
const tools = [
  { binary: 'memcached', apt: 'memcached', brew: 'memcached' },
  { binary: 'openssl', apt: 'openssl', brew: 'openssl' },
  // Debian installs nutcracker in /usr/sbin, which a user's PATH may lack.
  { binary: 'nutcracker', apt: 'nutcracker', brew: 'twemproxy', paths: ['/usr/sbin/nutcracker', '/usr/local/sbin/nutcracker'] },
  // Ubuntu names the binary chromium-browser; Homebrew installs an app bundle.
  { binary: 'chromium', apt: 'chromium', brew: '--cask chromium', paths: ['/usr/bin/chromium-browser', '/Applications/Chromium.app/Contents/MacOS/Chromium'] }
]

function has (tool) {
  if ((tool.paths ?? []).some((path) => existsSync(path))) return true
  return spawnSync('sh', ['-c', `command -v ${tool.binary}`], { stdio: 'ignore' }).status === 0
}

function run (command, args) {
  console.log(`[setup] ${command} ${args.join(' ')}`)
  execFileSync(command, args, { stdio: 'inherit' })
}

const missing = tools.filter((tool) => !has(tool))
if (missing.length === 0) process.exit(0)

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
const hasCommand = (binary) => has({ binary })
console.log(`[setup] the tests need ${missing.map((tool) => tool.binary).join(' and ')}, which this machine lacks`)
try {
  if (process.platform === 'linux' && isRoot && hasCommand('apt-get')) {
    run('apt-get', ['update'])
    run('apt-get', ['install', '-y', ...missing.map((tool) => tool.apt)])
  } else if (process.platform === 'darwin' && hasCommand('brew')) {
    for (const tool of missing) run('brew', ['install', ...tool.brew.split(' ')])
  }
} catch (error) {
  console.error(`[setup] install failed: ${error.message}`)
}

const stillMissing = tools.filter((tool) => !has(tool))
if (stillMissing.length > 0) {
  const hint = process.platform === 'darwin'
    ? stillMissing.map((tool) => `brew install ${tool.brew}`).join(' && ')
    : `sudo apt-get update && sudo apt-get install -y ${stillMissing.map((tool) => tool.apt).join(' ')}`
  console.error(`[setup] ${stillMissing.map((tool) => tool.binary).join(' and ')} not found. Install with:\n\n    ${hint}\n`)
  process.exit(1)
}
