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
  it('gives the test command that .ci/run calls', () => {
    assert.match(readme, /npm ci && npm test/)
    assert.match(readFileSync('.ci/run', 'utf8'), /npm test/)
  })
})
