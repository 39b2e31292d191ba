// S11: credentials. Secrets come from files (the container convention) and
// never show: not in stdout or stderr at LOG_LEVEL=debug, not in /metrics,
// not in an answer, whether the broker refuses them or keeps hanging up.
// A throwaway broker user with a random password makes "it connected" prove
// the file was read (the default guest/guest would not get in as that user).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { rabbitmqctl } from '../helpers/rabbitmqctl'
import { assertRelayqError } from '../helpers/relayq-error'
import { TcpProxy } from '../helpers/tcp-proxy'
import { sleep } from '../helpers/wait'

const CANARY = 's3cr3t-canary'

describe('S11: credentials', () => {
  let dir: string
  let broker: TestBroker
  let echo: Echo
  const user = `relayq-test-${randomBytes(4).toString('hex')}`
  const password = randomBytes(12).toString('hex')
  const running: RelayProcess[] = []
  const services: string[] = []

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relayq-secrets-'))
    await rabbitmqctl('add_user', user, password)
    await rabbitmqctl('set_permissions', '-p', '/', user, '.*', '.*', '.*')
    broker = await connectBroker()
    echo = await startEcho(echoJson)
  })

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await rabbitmqctl('delete_user', user).catch(() => {})
    for (const s of services) await broker?.deleteService(s)
    await broker?.close()
    await echo?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  function secretFile (name: string, content: string): string {
    const path = join(dir, name)
    // Mounted secrets end with a newline; relayq strips one.
    writeFileSync(path, content + '\n', { mode: 0o600 })
    return path
  }

  function start (env: Record<string, string>): RelayProcess {
    // RABBITMQ_URL empty: the helper's default URL (guest) must not be what connects.
    const p = spawnRelay({ RABBITMQ_URL: '', LOG_LEVEL: 'debug', ...env })
    running.push(p)
    return p
  }

  function assertNoCanary (where: string, text: string): void {
    assert.ok(!text.includes(CANARY), `${where} shows the password: ${text.slice(Math.max(0, text.indexOf(CANARY) - 200), text.indexOf(CANARY) + 50)}`)
  }

  it('RABBITMQ_PASSWORD_FILE and RABBITMQ_URL_FILE are read: both modes connect as the file\'s user and carry a round trip', async () => {
    const service = uniqueService('cred')
    services.push(service)
    const adminPort = await freePort()
    const port = await freePort()
    const deq = start({
      RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1',
      RABBITMQ_URL_FILE: secretFile('url', `amqp://${user}:${password}@127.0.0.1:5672/%2F`),
    })
    const enq = start({
      RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ASYNC_JOBS: 'false',
      RABBITMQ_HOST: '127.0.0.1', RABBITMQ_USER: user, RABBITMQ_PASSWORD_FILE: secretFile('password', password),
    })
    await waitReady(`http://127.0.0.1:${adminPort}`, 20000)
    await waitReady(`http://127.0.0.1:${port}`, 20000)
    const res = await send(`http://127.0.0.1:${port}/${service}/from-files`)
    assert.equal(res.status, 200, res.body.toString())
    const connections = await rabbitmqctl('list_connections', '-q', '--no-table-headers', 'user')
    assert.ok(connections.split('\n').filter((l) => l.trim() === user).length >= 3, `connections as ${user}: ${connections}`)
    for (const p of [enq, deq]) assert.ok(!p.output().includes(password), 'the password from the file shows in the output')
    const config = enq.logs().find((l) => l.msg === 'starting relayq')!.config as Record<string, string>
    assert.equal(config.RABBITMQ_PASSWORD, '[redacted]')
    enq.kill('SIGTERM')
    deq.kill('SIGTERM')
    await Promise.all([enq.exited, deq.exited])
  })

  for (const [variable, direct] of [['RABBITMQ_PASSWORD', CANARY], ['RABBITMQ_URL', `amqp://guest:${CANARY}@127.0.0.1:5672`]] as const) {
    it(`${variable} and ${variable}_FILE together: start-up refused (exit 78), naming both, showing neither`, async () => {
      const p = start({ RELAYQ_MODE: 'enqueuer', [variable]: direct, [`${variable}_FILE`]: secretFile(`both-${variable}`, direct) })
      const { code } = await p.exited
      assert.equal(code, 78)
      assert.match(p.output(), new RegExp(`${variable}: set both ${variable} and ${variable}_FILE`))
      assertNoCanary('the output', p.output())
    })
  }

  const refused: Array<[string, () => Record<string, string>]> = [
    ['RABBITMQ_URL', () => ({ RABBITMQ_URL: `amqp://guest:${CANARY}@127.0.0.1:5672` })],
    ['RABBITMQ_PASSWORD', () => ({ RABBITMQ_HOST: '127.0.0.1', RABBITMQ_PASSWORD: CANARY })],
    ['RABBITMQ_PASSWORD_FILE', () => ({ RABBITMQ_HOST: '127.0.0.1', RABBITMQ_USER: user, RABBITMQ_PASSWORD_FILE: secretFile('canary', CANARY) })],
  ]
  for (const [how, env] of refused) {
    for (const mode of ['enqueuer', 'dequeuer'] as const) {
      it(`${mode}, a wrong password in ${how}: a non-zero exit with ACCESS_REFUSED, and the password nowhere in the output`, async () => {
        const port = String(await freePort())
        const p = start({ RELAYQ_MODE: mode, ...env(), ...(mode === 'enqueuer' ? { ENQUEUER_PORT: port, ENQUEUER_HOST: '127.0.0.1', ASYNC_JOBS: 'false' } : { SERVICE_NAME: uniqueService('cred'), DOWNSTREAM_URL: echo.url, METRICS_PORT: port, METRICS_HOST: '127.0.0.1' }) })
        const result = await Promise.race([p.exited, sleep(15000).then(() => null)])
        assert.ok(result !== null, `still running: ${p.output()}`)
        assert.notEqual(result.code, 0)
        assert.match(p.output(), /ACCESS_REFUSED/)
        assertNoCanary('stdout and stderr', p.output())
      })
    }
  }

  for (const mode of ['refuse', 'blackhole'] as const) {
    it(`a broker that ${mode === 'refuse' ? 'hangs up at once' : 'never answers'}: while relayq keeps retrying, the password is in no log line, no /metrics and no answer`, async () => {
      const proxy = new TcpProxy('127.0.0.1', 5672)
      await proxy.start()
      proxy.setMode(mode)
      try {
        const url = `amqp://guest:${CANARY}@127.0.0.1:${proxy.port}`
        const port = await freePort()
        const adminPort = await freePort()
        const enq = start({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ASYNC_JOBS: 'false', RABBITMQ_URL: url, RABBITMQ_CONNECT_TIMEOUT_MS: '300', RABBITMQ_RECONNECT_MAX_MS: '200' })
        const deq = start({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: uniqueService('cred'), DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1', RABBITMQ_URL: url, RABBITMQ_CONNECT_TIMEOUT_MS: '300', RABBITMQ_RECONNECT_MAX_MS: '200' })
        await sleep(3000)
        assert.equal(enq.child.exitCode, null, enq.output())
        assert.equal(deq.child.exitCode, null, deq.output())
        const answer = await send(`http://127.0.0.1:${port}/svc/x`)
        assertRelayqError(answer, 503, 'RQ_ERR_BROKER_UNAVAILABLE')
        assertNoCanary('an answer', answer.body.toString())
        for (const metrics of [`http://127.0.0.1:${port}/metrics`, `http://127.0.0.1:${adminPort}/metrics`]) {
          const text = (await send(metrics)).body.toString()
          assert.match(text, /relayq_broker_connected\{connection="[a-z]+"\} 0/)
          assertNoCanary(metrics, text)
        }
        for (const p of [enq, deq]) {
          // The retries were logged, with the broker named, so the check above read real lines.
          assert.ok(p.logs().some((l) => l.msg === 'cannot connect to broker' && l.broker === `amqp://127.0.0.1:${proxy.port}`), p.output())
          assertNoCanary('stdout and stderr', p.output())
          p.kill('SIGTERM')
          await p.exited
          assertNoCanary('stdout and stderr after shutdown', p.output())
        }
      } finally {
        await proxy.stop()
      }
    })
  }
})
