// `npm test`: type-check, build the bundle (the process tests run it; not for unit alone), then
// every test file under test/, one file at a time (they share one broker and
// two cores). `npm test -- unit` (or integration, process, fault, security,
// deploy, soak, cluster) runs one group. soak and cluster are not in the
// default run: the 5-minute soak, and the rolling restart of a private
// three-node cluster (about 1.5 minutes; node kills on a cluster are in fault).
import { execFileSync, spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { requireBroker } from './broker-check.mjs'

const GROUPS = ['unit', 'integration', 'process', 'fault', 'security', 'deploy']
const wanted = process.argv.slice(2)
const groups = wanted.length > 0 ? wanted : GROUPS

function files (dir) {
  let out = []
  let entries
  try { entries = readdirSync(dir) } catch { return out }
  for (const e of entries) {
    const p = join(dir, e)
    if (statSync(p).isDirectory()) out = out.concat(files(p))
    else if (e.endsWith('.test.ts')) out.push(p)
  }
  return out.sort()
}

const selected = groups.flatMap((g) => files(join('test', g)))
if (selected.length === 0) {
  console.error(`no test files for: ${groups.join(', ')}`)
  process.exit(1)
}
if (groups.some((g) => g !== 'unit')) await requireBroker()

const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx'
console.log('> tsc --noEmit')
execFileSync(npx, ['tsc', '--noEmit'], { stdio: 'inherit' })
// Unit tests run the sources only (none spawns the bundle), so `npm run test:unit` skips the build.
if (groups.some((g) => g !== 'unit')) {
  console.log('> build')
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' })
}

// node:test applies the timeout to each file as a whole: the 5-minute soak needs more than the rest.
const timeoutMs = groups.includes('soak') ? 900_000 : 300_000
console.log(`> node --test (${selected.length} files)`)
const result = spawnSync(process.execPath, [
  '--import', 'tsx',
  '--test',
  '--test-concurrency=1',
  `--test-timeout=${timeoutMs}`,
  ...selected,
], { stdio: 'inherit', env: { ...process.env, RELAYQ_TEST: '1' } })
process.exit(result.status ?? 1)
