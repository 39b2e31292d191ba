import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { withEnvTable } from '../../src/config/table'
import { ERROR_CODES } from '../../src/errors'

const readme = readFileSync('README.md', 'utf8')

describe('README', () => {
  it('configuration table matches the spec (run `npm run docs` after changing a variable)', () => {
    assert.equal(withEnvTable(readme), readme)
  })
  it('lists every error code', () => {
    for (const code of ERROR_CODES) assert.ok(readme.includes(code), code)
  })
  it('`npm ci` prints no install-scripts warning: allowScripts covers every dependency with an install script', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { allowScripts?: Record<string, boolean> }
    const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean, version?: string }> }
    const withScripts = Object.entries(lock.packages).filter(([path, p]) => path !== '' && p.hasInstallScript === true)
    assert.ok(withScripts.length > 0, 'the lock file marks install scripts (esbuild has one)')
    for (const [path, p] of withScripts) {
      const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
      const covered = Object.keys(pkg.allowScripts ?? {}).some((k) => k === name || k === `${name}@${p.version ?? ''}`)
      assert.ok(covered, `${name} has an install script that allowScripts does not cover`)
    }
  })

  it('gives the test command that .ci/run calls', () => {
    assert.match(readme, /npm ci && npm test/)
    assert.match(readFileSync('.ci/run', 'utf8'), /npm test/)
  })
})
