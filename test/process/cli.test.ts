// The bundle's command line: help and version answer without any configuration
// (no RELAYQ_MODE, no broker) and exit 0.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { spawnRelay } from '../helpers/process'

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }

async function run (...args: string[]): Promise<{ code: number | null, out: string }> {
  const p = spawnRelay({ RABBITMQ_URL: 'amqp://127.0.0.1:1' }, { args })
  const { code } = await p.exited
  return { code, out: p.output() }
}

describe('the command line', () => {
  for (const arg of ['--help', '-h', 'help']) {
    it(`${arg} prints the usage and exits 0`, async () => {
      const r = await run(arg)
      assert.equal(r.code, 0, r.out)
      assert.match(r.out, /RELAYQ_MODE=enqueuer/)
      assert.match(r.out, /RELAYQ_MODE=dequeuer/)
      assert.match(r.out, /dlq <command>/)
      assert.match(r.out, /configuration table in the README/)
      assert.doesNotMatch(r.out, /invalid configuration/)
    })
  }

  for (const arg of ['--version', 'version']) {
    it(`${arg} prints the version and exits 0`, async () => {
      const r = await run(arg)
      assert.equal(r.code, 0, r.out)
      assert.equal(r.out.trim(), `relayq ${pkg.version}`)
    })
  }

  for (const args of [['dlq', '--help'], ['dlq', 'help'], ['dlq', 'replay', '--help'], ['dlq', '-h']]) {
    it(`${args.join(' ')} prints the dlq usage and exits 0`, async () => {
      const r = await run(...args)
      assert.equal(r.code, 0, r.out)
      assert.match(r.out, /usage: relayq dlq <command>/)
      assert.doesNotMatch(r.out, /a command is required/)
    })
  }

  it('dlq without a command is still a usage error (exit 2)', async () => {
    const r = await run('dlq')
    assert.equal(r.code, 2)
    assert.match(r.out, /a command is required/)
  })
})
