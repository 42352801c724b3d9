// Runs every compiled test file (build/test/**/*.test.js) with node:test.
// Node 20's --test cannot take globs, and a bare directory would also run the
// helpers, so the files are listed here.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'

function findTests (dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return findTests(path)
    return entry.name.endsWith('.test.js') ? [path] : []
  })
}

const filter = process.argv.slice(2)
const files = findTests('build/test').sort()
  .filter((file) => filter.length === 0 || filter.some((part) => file.includes(part)))
if (files.length === 0) {
  console.error('no test files found under build/test')
  process.exit(1)
}
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit' })
process.exit(result.status ?? 1)
