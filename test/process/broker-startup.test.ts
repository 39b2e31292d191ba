// Start-up against a broker that cannot work as configured, through the
// bundle: a missing vhost and amqps:// to a plain port stop at once with a
// message naming what to fix; a broker that is down is retried, and the
// retries stay visible in the log at a bounded rate.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { freePort, spawnRelay, type RelayProcess } from '../helpers/process'
import { sleep, waitFor } from '../helpers/wait'
import { uniqueService } from '../helpers/broker'

describe('broker problems at start-up', () => {
  const running: RelayProcess[] = []
  let echo: Echo | null = null

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await echo?.close()
  })

  async function modeEnv (mode: 'enqueuer' | 'dequeuer'): Promise<Record<string, string>> {
    const port = String(await freePort())
    if (mode === 'enqueuer') return { RELAYQ_MODE: mode, ENQUEUER_PORT: port, ENQUEUER_HOST: '127.0.0.1', ASYNC_JOBS: 'false' }
    echo ??= await startEcho(echoJson)
    return { RELAYQ_MODE: mode, SERVICE_NAME: uniqueService('boot'), DOWNSTREAM_URL: echo.url, METRICS_PORT: port, METRICS_HOST: '127.0.0.1' }
  }

  async function exitsNaming (env: Record<string, string>, pattern: RegExp): Promise<void> {
    const p = spawnRelay({ RABBITMQ_RECONNECT_MAX_MS: '200', ...env })
    running.push(p)
    const result = await Promise.race([p.exited, sleep(15000).then(() => null)])
    assert.ok(result !== null, `still running after 15 s: ${p.output()}`)
    assert.notEqual(result.code, 0)
    const fatal = p.logs().find((l) => l.level === 'fatal' || l.level === 60)
    assert.ok(fatal !== undefined, p.output())
    assert.match(JSON.stringify(fatal), pattern)
  }

  for (const mode of ['enqueuer', 'dequeuer'] as const) {
    it(`${mode}: RABBITMQ_VHOST naming a vhost that does not exist stops start-up, naming RABBITMQ_VHOST`, async () => {
      await exitsNaming({ ...await modeEnv(mode), RABBITMQ_URL: '', RABBITMQ_HOST: '127.0.0.1', RABBITMQ_VHOST: 'relayq-no-such-vhost' }, /530 NOT_ALLOWED.*RABBITMQ_VHOST/)
    })
  }

  it('amqps:// to the plain AMQP port asks whether this is a TLS port, not about certificates', async () => {
    await exitsNaming({ ...await modeEnv('enqueuer'), RABBITMQ_URL: 'amqps://guest:guest@127.0.0.1:5672' }, /is this a TLS port\?/)
  })

  it('ENQUEUER_MAX_BODY_BYTES over the broker version\'s largest message (128 MiB on 3.x) stops start-up, naming both limits', async () => {
    await exitsNaming({ ...await modeEnv('enqueuer'), ENQUEUER_MAX_BODY_BYTES: String(200 * 1024 * 1024) }, /ENQUEUER_MAX_BODY_BYTES \(209715200\).*the default of RabbitMQ 3\./)
  })

  it('with the broker down, every connection logs its failed attempts at a bounded rate, with the count', async () => {
    const dead = await freePort()
    const p = spawnRelay({ ...await modeEnv('enqueuer'), RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${dead}`, RABBITMQ_RECONNECT_INITIAL_MS: '50', RABBITMQ_RECONNECT_MAX_MS: '200' })
    running.push(p)
    const started = Date.now()
    const failures = (): Array<Record<string, unknown>> => p.logs().filter((l) => l.msg === 'cannot connect to broker')
    // 5 s between lines: the second line comes after about 5 s and counts the attempts in between.
    await waitFor(() => failures().length >= 2, { timeoutMs: 20000, what: `a second failure line: ${p.output()}` })
    const elapsed = Date.now() - started
    const lines = failures()
    assert.ok(lines.length <= Math.ceil(elapsed / 5000) + 1, `${lines.length} lines in ${elapsed} ms`)
    assert.equal(lines[0]!.attempts, 1)
    assert.ok((lines[1]!.attempts as number) > 3, `second line counts ${String(lines[1]!.attempts)} attempts`)
    assert.equal(p.child.exitCode, null, 'still running and retrying')
  })
})
