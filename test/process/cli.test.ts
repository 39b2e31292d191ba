// The bundle's command line: help and version answer without any configuration
// (no RELAYQ_MODE, no broker) and exit 0.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { describe, it } from 'node:test'
import { BUNDLE, freePort, spawnRelay } from '../helpers/process'
import { waitFor } from '../helpers/wait'

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
      assert.match(r.out, /configuration table in\s+docs\/configuration\.md/)
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

  it('the bundle, declared as bin, is executable: it runs without naming node', () => {
    assert.equal(statSync(BUNDLE).mode & 0o111, 0o111, 'mode has the execute bits')
    assert.match(readFileSync(BUNDLE, 'utf8').slice(0, 30), /^#!\/usr\/bin\/env node\n/)
    assert.equal(execFileSync(BUNDLE, ['--version'], { encoding: 'utf8' }).trim(), `relayq ${pkg.version}`)
  })

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

  it('the start-up line shows the effective configuration, credentials redacted, and warns about misspelled variables', async () => {
    const p = spawnRelay({
      RELAYQ_MODE: 'dequeuer',
      SERVICE_NAME: 'cli-start-line',
      DOWNSTREAM_URL: 'http://svc:d0wnstr3am@127.0.0.1:9/api?token=t0k3n',
      HEALTH_CHECK_URL: 'http://127.0.0.1:9/health?key=h3alth',
      METRICS_PORT: String(await freePort()),
      METRICS_HOST: '127.0.0.1',
      RABBITMQ_URL: 'amqp://guest:br0k3r@127.0.0.1:1',
      DEQUEUER_CONCURENCY: '4',
    })
    try {
      const line = await waitFor(() => p.logs().find((l) => l.msg === 'starting relayq'), { what: 'the start-up line' })
      const config = line.config as Record<string, string>
      assert.equal(config.RABBITMQ_URL, 'amqp://guest:[redacted]@127.0.0.1:1')
      assert.equal(config.RABBITMQ_PASSWORD, undefined, 'RABBITMQ_URL makes the host family unused')
      assert.equal(config.RABBITMQ_HOST, undefined)
      assert.equal(config.DOWNSTREAM_URL, 'http://svc:[redacted]@127.0.0.1:9/api?token=[redacted]')
      const warning = await waitFor(() => p.logs().find((l) => l.level === 'warn' && String(l.msg).includes('DEQUEUER_CONCURENCY')), { what: 'the unknown-variable warning' })
      assert.match(String(warning.msg), /did you mean DEQUEUER_CONCURRENCY\?/)
      assert.doesNotMatch(p.output(), /d0wnstr3am|t0k3n|h3alth|br0k3r/)
    } finally {
      p.kill('SIGKILL')
      await p.exited
    }
  })
})
