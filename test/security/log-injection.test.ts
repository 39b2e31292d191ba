// S17: log injection. Hostile bytes in paths, headers and messages, sent to
// both modes run from the bundle at LOG_LEVEL=debug: every stdout line stays
// one JSON object, and no forged entry appears. relayq logs no request data
// at all through HTTP; messages published straight to the queue do reach a
// log line (the dead-letter reason), which shows the attacker's bytes pass
// through the logger and come out escaped.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { rawExchange } from '../helpers/raw-http'
import { waitFor } from '../helpers/wait'

const FORGED = '{"level":"fatal","time":"2026-01-01T00:00:00.000Z","msg":"injected"}'

/** Every stdout line must parse as one JSON object of relayq's shape; returns them. */
function parseEveryLine (name: string, p: RelayProcess): Array<Record<string, unknown>> {
  const stdout = p.output()
  const lines = stdout.split('\n').filter((l) => l !== '')
  assert.ok(lines.length > 0, `${name} wrote nothing`)
  return lines.map((line, i) => {
    let entry: unknown
    try {
      entry = JSON.parse(line)
    } catch {
      assert.fail(`${name} line ${i + 1} is not JSON: ${JSON.stringify(line.slice(0, 200))}`)
    }
    assert.ok(typeof entry === 'object' && entry !== null && !Array.isArray(entry), `${name} line ${i + 1} is not an object`)
    const e = entry as Record<string, unknown>
    assert.equal(typeof e.level, 'string', line)
    assert.equal(typeof e.time, 'string', line)
    assert.equal(typeof e.msg, 'string', line)
    assert.notEqual(e.msg, 'injected', `${name} line ${i + 1} is a forged entry`)
    return e
  })
}

describe('S17: log injection', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: RelayProcess
  let enq: RelayProcess
  let port: number
  const service = uniqueService('logs')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((_req, res) => {
      // The service's answer carries forged lines too, back through both modes.
      res.setHeader('x-log', FORGED)
      res.setHeader('x-latin', Buffer.from('\u2028 \u0085 ' + FORGED, 'utf8').toString('latin1'))
      res.writeHead(200)
      res.end(`${FORGED}\n${FORGED}\u2028`)
    })
    const adminPort = await freePort()
    port = await freePort()
    deq = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1', LOG_LEVEL: 'debug', DEQUEUER_MAX_ATTEMPTS: '1' })
    enq = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', LOG_LEVEL: 'debug', ASYNC_JOBS: 'false' })
    await waitReady(`http://127.0.0.1:${adminPort}`, 20000)
    await waitReady(`http://127.0.0.1:${port}`, 20000)
  })

  after(async () => {
    for (const p of [enq, deq]) p?.kill('SIGKILL')
    await Promise.all([enq?.exited, deq?.exited])
    await echo?.close()
    await broker?.deleteService(service)
    await broker?.close()
  })

  it('hostile paths and headers through HTTP: served or refused, and both logs stay one JSON object per line', async () => {
    const lfPath = `/${service}/a%0d%0a${encodeURIComponent(FORGED)}`
    const answers = [
      await rawExchange(port, `GET ${lfPath} HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true }),
      await rawExchange(port, `GET /${service}/b%E2%80%A8%E2%80%A9${encodeURIComponent(FORGED)} HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true }),
      // U+2028 as raw bytes in the target, and in a header value; NEL (0x85) too.
      await rawExchange(port, Buffer.concat([Buffer.from(`GET /${service}/c`), Buffer.from('\u2028', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]), { firstResponse: true }),
      await rawExchange(port, Buffer.concat([Buffer.from(`GET /${service}/d HTTP/1.1\r\nHost: x\r\nX-Log: ${FORGED}\r\nX-Sep: a`), Buffer.from('\u2028\u2029', 'utf8'), Buffer.from([0x85]), Buffer.from(`${FORGED}\r\nX-Relayq-Timeout-Ms: ${FORGED}\r\n\r\n`)]), { firstResponse: true }),
      await rawExchange(port, `GET /${service}/e HTTP/1.1\r\nHost: x\r\nX-Log: ${FORGED}\r\nTraceparent: ${FORGED}\r\n\r\n`, { firstResponse: true }),
      await rawExchange(port, `GET /jobs/%0d%0a${encodeURIComponent(FORGED)} HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true }),
      await rawExchange(port, `GET /amq.${encodeURIComponent(FORGED)}/x HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true }),
      // A bare CR/LF the parser refuses.
      await rawExchange(port, `GET /${service}/f\r\n${FORGED} HTTP/1.1\r\nHost: x\r\n\r\n`, { timeoutMs: 2000 }),
    ]
    for (const a of answers) assert.match(a.text, /^HTTP\/1\.1 [1-5]\d\d /, a.text)
    assert.equal(answers[0]!.responses[0]!.status, 200)
    assert.ok(echo.received.some((r) => r.url.includes('%0d%0a')), 'the %0d%0a path reached the service')
    assert.equal((await send(`http://127.0.0.1:${port}/${service}/g`, { headers: { 'x-log': FORGED } })).status, 200)
    const enqLines = parseEveryLine('enqueuer', enq)
    const deqLines = parseEveryLine('dequeuer', deq)
    assert.ok(deqLines.some((l) => l.msg === 'delivery'), 'the dequeuer logged at debug level')
    assert.ok(enqLines.some((l) => l.msg === 'ready'))
  })

  it('messages published straight to the queue put the attacker\'s bytes into a log line: they come out escaped, inside one JSON string', async () => {
    const q = `${service}_requests`
    // CR and LF in a header value are refused without an echo; a line separator and a closing quote are not.
    const method = `X\u2028"}${FORGED}`
    const headerName = `x\r\n${FORGED}`.slice(0, 40)
    await broker.publish(q, Buffer.from('m'), { correlationId: `c\n${FORGED}\u2028`, headers: { 'x-http-method': method } })
    await broker.publish(q, Buffer.from('h'), { correlationId: 'h', headers: { [headerName]: 'v', 'x-http-path': '/ok' } })
    const lines = await waitFor(() => {
      const got = parseEveryLine('dequeuer', deq).filter((l) => l.msg === 'message dead-lettered')
      return got.length >= 2 ? got : null
    }, { what: 'two dead-letter log lines' })
    const details = lines.map((l) => String(l.detail))
    assert.ok(details.some((d) => d.includes(method.toUpperCase().slice(0, 20))), `the method reached the log: ${details.join(' | ')}`)
    assert.ok(details.some((d) => d.includes(headerName.toLowerCase())), `the header name reached the log: ${details.join(' | ')}`)
    assert.ok(lines.some((l) => l.correlationId === `c\n${FORGED}\u2028`), 'the correlation id reached the log intact')
    parseEveryLine('enqueuer', enq)
    assert.equal(enq.child.exitCode, null)
    assert.equal(deq.child.exitCode, null)
  })
})
