// S16: the dependency floor. amqplib 2.3.0 and 2.3.1 fixed security bugs
// (GHSA-37f9-7m79-6866, amqp-node/amqplib#867), so nothing older may be
// installed or bundled, and the bundle says at start-up which one it carries.
// No network here: `npm audit` belongs to CI, not to a test.
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { BUNDLE, spawnRelay } from '../helpers/process'
import { waitFor } from '../helpers/wait'

interface LockPackage { version?: string, dev?: boolean, engines?: Record<string, string> | string[] }
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string>, engines?: { node?: string } }
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, LockPackage> }

type Version = [number, number, number]
function parse (v: string): Version {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v.trim())
  assert.ok(m !== null, `not a version: ${v}`)
  return [Number(m[1]), Number(m[2]), Number(m[3])]
}
function atLeast (a: Version, b: Version): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!
  return true
}
/** The lowest version a plain `>=x.y.z` range admits, or null for other shapes. */
function floorOf (range: string): Version | null {
  const m = /^>=\s*v?(\d+\.\d+\.\d+)$/.exec(range.trim())
  return m === null ? null : parse(m[1]!)
}

const AMQPLIB_FLOOR: Version = [2, 3, 1]

describe('S16: dependency floor', () => {
  it('amqplib is at least 2.3.1, in package.json and in the lockfile', () => {
    assert.ok(atLeast(parse(pkg.dependencies.amqplib!.replace(/^[\^~]/, '')), AMQPLIB_FLOOR), `package.json asks for amqplib ${pkg.dependencies.amqplib}`)
    const locked = lock.packages['node_modules/amqplib']
    assert.ok(locked?.version !== undefined, 'amqplib is not in package-lock.json')
    assert.ok(atLeast(parse(locked.version), AMQPLIB_FLOOR), `package-lock.json has amqplib ${locked.version}`)
    // No second, older copy nested under another package.
    for (const [path, p] of Object.entries(lock.packages)) {
      if (path.endsWith('/node_modules/amqplib') && p.version !== undefined) assert.ok(atLeast(parse(p.version), AMQPLIB_FLOOR), `${path} ${p.version}`)
    }
  })

  it('engines.node is a floor that every runtime dependency accepts, the lockfile agrees, and this Node meets it', () => {
    const range = pkg.engines?.node
    assert.ok(range !== undefined, 'package.json has no engines.node')
    const floor = floorOf(range)
    assert.ok(floor !== null, `engines.node should be a plain >=x.y.z floor, is ${range}`)
    assert.ok(floor[0] >= 20, `engines.node ${range} admits Node before 20`)
    assert.equal((lock.packages['']?.engines as Record<string, string> | undefined)?.node, range, 'package-lock.json is stale')
    // relayq must not claim to run where one of its runtime dependencies says it does not.
    for (const [path, p] of Object.entries(lock.packages)) {
      if (path === '' || p.dev === true || Array.isArray(p.engines)) continue
      const theirs = p.engines?.node === undefined ? null : floorOf(p.engines.node)
      if (theirs !== null) assert.ok(atLeast(floor, theirs), `${path} needs Node ${p.engines!.node}, relayq says ${range}`)
    }
    assert.ok(atLeast(parse(process.version), floor), `this Node ${process.version} is below ${range}`)
  })

  it('the bundle, alone in an empty folder, logs the amqplib version it carries at start-up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relayq-deps-'))
    try {
      // Away from node_modules: the version must be compiled in, not read at run time.
      copyFileSync(BUNDLE, join(dir, 'relayq.js'))
      const p = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: '0', ENQUEUER_HOST: '127.0.0.1', RABBITMQ_URL: 'amqp://127.0.0.1:1' }, { bundle: join(dir, 'relayq.js'), cwd: dir })
      try {
        const line = await waitFor(() => p.logs().find((l) => l.msg === 'starting relayq'), { what: 'the start-up line' })
        assert.equal(line.amqplib, lock.packages['node_modules/amqplib']!.version)
        assert.equal(line.node, process.version)
      } finally {
        p.kill('SIGKILL')
        await p.exited
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
