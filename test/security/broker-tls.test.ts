// S10: TLS to the broker. A private RabbitMQ node with a TLS listener that
// requires client certificates, a throwaway CA made with openssl, and the
// bundle as a child process: what an operator runs is what is tested.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { uniqueService } from '../helpers/broker'
import { makeTestCerts, type TestCerts } from '../helpers/certs'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { PrivateBroker } from '../helpers/private-broker'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { assertRelayqError } from '../helpers/relayq-error'
import { sleep } from '../helpers/wait'

describe('S10: TLS to the broker', () => {
  let certs: TestCerts
  let broker: PrivateBroker
  let tlsPort: number
  let echo: Echo
  const running: RelayProcess[] = []

  before(async () => {
    certs = makeTestCerts()
    tlsPort = await freePort()
    broker = new PrivateBroker([
      `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${certs.ca}`,
      `ssl_options.certfile = ${certs.serverCert}`,
      `ssl_options.keyfile = ${certs.serverKey}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
    ])
    await broker.start()
    echo = await startEcho(echoJson)
  })

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await echo?.close()
    await broker?.stop()
    certs?.remove()
  })

  const tlsUrl = (): string => `amqps://guest:guest@127.0.0.1:${tlsPort}`
  const clientCert = (): Record<string, string> => ({ RABBITMQ_CERT_FILE: certs.clientCert, RABBITMQ_KEY_FILE: certs.clientKey })

  function start (env: Record<string, string>): RelayProcess {
    const p = spawnRelay({ RABBITMQ_URL: tlsUrl(), RABBITMQ_RECONNECT_MAX_MS: '500', ...env })
    running.push(p)
    return p
  }

  async function exitsWith (p: RelayProcess, message: RegExp): Promise<void> {
    const started = Date.now()
    const result = await Promise.race([p.exited, sleep(10000).then(() => 'still running' as const)])
    assert.notEqual(result, 'still running', `did not stop: ${p.output()}`)
    assert.notEqual((result as { code: number }).code, 0)
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`)
    const fatal = p.logs().find((l) => l.level === 'fatal')
    assert.ok(fatal !== undefined, p.output())
    assert.match(String(fatal.err), message)
  }

  for (const mode of ['enqueuer', 'dequeuer'] as const) {
    it(`${mode}: without RABBITMQ_CA_FILE the broker's certificate does not verify: a non-zero exit at once, naming the certificate and RABBITMQ_CA_FILE`, async () => {
      const port = String(await freePort())
      const p = start({ RELAYQ_MODE: mode, ...clientCert(), ...(mode === 'enqueuer' ? { ENQUEUER_PORT: port, ENQUEUER_HOST: '127.0.0.1' } : { SERVICE_NAME: uniqueService('tls'), DOWNSTREAM_URL: echo.url, METRICS_PORT: port, METRICS_HOST: '127.0.0.1' }) })
      await exitsWith(p, /TLS certificate was refused \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\).*RABBITMQ_CA_FILE/)
    })
  }

  it('a certificate for another name (RABBITMQ_TLS_SERVERNAME=wrong.example): a non-zero exit naming the name check', async () => {
    const p = start({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(await freePort()), ENQUEUER_HOST: '127.0.0.1', RABBITMQ_CA_FILE: certs.ca, RABBITMQ_TLS_SERVERNAME: 'wrong.example', ...clientCert() })
    await exitsWith(p, /ERR_TLS_CERT_ALTNAME_INVALID.*RABBITMQ_TLS_SERVERNAME/)
  })

  it('the broker requires a client certificate and gets none: a non-zero exit that says so, not that the CA is wrong', async () => {
    const p = start({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(await freePort()), ENQUEUER_HOST: '127.0.0.1', RABBITMQ_CA_FILE: certs.ca })
    await exitsWith(p, /refused the TLS handshake \(ERR_SSL_\w*ALERT\w*\).*RABBITMQ_CERT_FILE/)
  })

  it('with RABBITMQ_CA_FILE and a client certificate both modes connect over mutual TLS and carry a round trip', async () => {
    const service = uniqueService('tls')
    const adminPort = await freePort()
    const port = await freePort()
    const tls = { RABBITMQ_CA_FILE: certs.ca, ...clientCert() }
    const deq = start({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1', ...tls })
    const enq = start({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ...tls })
    await waitReady(`http://127.0.0.1:${adminPort}`, 20000)
    await waitReady(`http://127.0.0.1:${port}`, 20000)
    const res = await send(`http://127.0.0.1:${port}/${service}/over-tls`, { method: 'POST', body: 'x' })
    assert.equal(res.status, 200, res.body.toString())
    assert.equal(res.json<{ url: string }>().url, '/over-tls')
    for (const p of [deq, enq]) {
      assert.ok(p.logs().some((l) => l.msg === 'connected to broker' && String(l.broker).startsWith('amqps://127.0.0.1:')), p.output())
    }
    // The broker agrees: both connections are TLS, with the client certificate.
    const { stdout } = await broker.ctl('list_connections', '-q', '--no-table-headers', 'name', 'ssl', 'peer_cert_subject')
    const lines = stdout.split('\n').filter((l) => l.trim() !== '')
    assert.ok(lines.length >= 3, stdout)
    assert.ok(lines.every((l) => /\ttrue\t/.test(l) && /CN=relayq-client/.test(l)), stdout)
    enq.kill('SIGTERM')
    deq.kill('SIGTERM')
    assert.equal((await enq.exited).code, 0)
    assert.equal((await deq.exited).code, 0)
  })

  it('RABBITMQ_TLS_INSECURE=true connects without the CA, and says so in a warning', async () => {
    const port = await freePort()
    const p = start({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', RABBITMQ_TLS_INSECURE: 'true', ...clientCert() })
    await waitReady(`http://127.0.0.1:${port}`, 20000)
    const warning = p.logs().find((l) => l.level === 'warn' && /RABBITMQ_TLS_INSECURE/.test(String(l.msg)))
    assert.ok(warning !== undefined, p.output())
    assert.match(String(warning.msg), /NOT verified/)
    p.kill('SIGTERM')
    await p.exited
  })

  it('a plain amqp:// URL to the TLS port: the enqueuer answers 503 within a second, and keeps trying', async () => {
    const port = await freePort()
    const p = start({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${tlsPort}` })
    const started = Date.now()
    let res = null
    while (res === null && Date.now() - started < 5000) {
      res = await send(`http://127.0.0.1:${port}/anything/x`).catch(() => null)
      if (res === null) await sleep(50)
    }
    assert.ok(res !== null, 'the enqueuer never listened')
    assertRelayqError(res, 503, 'RQ_ERR_BROKER_UNAVAILABLE')
    assert.ok(res.ms < 1000, `answered in ${res.ms} ms`)
    assert.equal(res.headers['retry-after'], '1')
    await sleep(2000)
    assert.equal(p.child.exitCode, null, `exited: ${p.output()}`)
    const again = await send(`http://127.0.0.1:${port}/anything/x`)
    assertRelayqError(again, 503, 'RQ_ERR_BROKER_UNAVAILABLE')
    assert.ok(again.ms < 1000)
    assert.equal((await send(`http://127.0.0.1:${port}/readyz`)).status, 503)
    p.kill('SIGTERM')
    await p.exited
  })
})
