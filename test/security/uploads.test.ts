// Oversized uploads, with the clients people use: each must read the 413.
// A declared length over the limit with `Expect: 100-continue` is refused
// before the body is sent (no 100 Continue); a body already on its way is read
// and thrown away, up to a bound, before the connection closes (nginx's
// lingering close), since closing with unread bytes makes the kernel reset the
// connection and clients still writing (Python's http.client and urllib,
// Node's fetch) see EPIPE or a reset instead of the answer.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'
import { LINGER_IDLE_MS, LINGER_MAX_BYTES } from '../../src/http/linger'

const run = promisify(execFile)
const LIMIT = 10 * 1024 * 1024
const UPLOAD = 20_000_000

const PYTHON = `
import http.client, sys, urllib.request, urllib.error
port, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = b'x' * ${UPLOAD}
try:
    if mode == 'http.client':
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
        c.request('POST', path, body=body, headers={'Content-Type': 'application/octet-stream'})
        r = c.getresponse()
        print(r.status, r.getheader('x-relayq-error'))
    else:
        try:
            urllib.request.urlopen(urllib.request.Request(f'http://127.0.0.1:{port}{path}', data=body, method='POST'), timeout=60)
            print('no error')
        except urllib.error.HTTPError as e:
            print(e.code, e.headers.get('x-relayq-error'))
except Exception as e:
    print('ERR', type(e).__name__, e)
`

describe('oversized uploads: real clients read the 413', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let dir: string
  let file: string
  const service = uniqueService('upload')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    enq = await startTestEnqueuer({ ENQUEUER_MAX_BODY_BYTES: String(LIMIT), ASYNC_JOBS: 'false' })
    dir = await mkdtemp(join(tmpdir(), 'relayq-upload-'))
    file = join(dir, 'body.bin')
    await writeFile(file, Buffer.alloc(UPLOAD, 120))
  })

  after(async () => {
    await rm(dir, { recursive: true, force: true })
    await enq.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('curl (Expect: 100-continue): 413 without 100 Continue, and the body is not sent', async () => {
    const n = echo.received.length
    const { stdout, stderr } = await run('curl', ['-sS', '-D', '-', '-o', '/dev/null', '--data-binary', `@${file}`, '-w', 'uploaded=%{size_upload}\n', `${enq.url}/${service}/up`], { timeout: 60000 })
    assert.doesNotMatch(stdout, /100 Continue/i, stdout)
    assert.match(stdout, /^HTTP\/1\.1 413 /, stdout + stderr)
    assert.match(stdout, /x-relayq-error: RQ_ERR_BODY_TOO_LARGE/i)
    assert.match(stdout, /uploaded=0$/m, 'curl sent some of the body')
    assert.equal(echo.received.length, n)
  })

  for (const mode of ['http.client', 'urllib']) {
    it(`python3 ${mode}: 413 RQ_ERR_BODY_TOO_LARGE, not a broken pipe`, async () => {
      const { stdout } = await run('python3', ['-c', PYTHON, String(enq.port), `/${service}/up`, mode], { timeout: 60000 })
      assert.equal(stdout.trim(), '413 RQ_ERR_BODY_TOO_LARGE')
    })
  }

  it('Node fetch (in its own process): 413 RQ_ERR_BODY_TOO_LARGE, not EPIPE', async () => {
    const script = `fetch(process.argv[1], { method: 'POST', body: Buffer.alloc(${UPLOAD}, 120) })
      .then(async (r) => console.log(r.status, (await r.json()).code), (e) => console.log('ERR', e.cause?.code ?? e.message))`
    const { stdout } = await run(process.execPath, ['-e', script, `${enq.url}/${service}/up`], { timeout: 60000 })
    assert.equal(stdout.trim(), '413 RQ_ERR_BODY_TOO_LARGE')
  })

  it('a chunked body over the limit: the 413 is read, though the client keeps writing after it', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 120)
    const pieces: Buffer[] = [Buffer.from(`POST /${service}/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`)]
    for (let i = 0; i < 16; i++) pieces.push(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]))
    pieces.push(Buffer.from('0\r\n\r\n'))
    const ex = await rawExchange(enq.port, Buffer.concat(pieces), { timeoutMs: 20000 })
    assert.equal(ex.responses.length, 1, ex.text.slice(0, 300))
    assertRelayqError(ex.responses[0]!, 413, 'RQ_ERR_BODY_TOO_LARGE')
  })

  it('Expect: 100-continue under the limit gets its 100 Continue and is served; a refusal for another reason comes without it and closes', async () => {
    const ok = await rawExchange(enq.port, `POST /${service}/small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`, { timeoutMs: 1000 })
    assert.match(ok.text, /^HTTP\/1\.1 100 Continue\r\n\r\n/, ok.text)
    const served = await rawExchange(enq.port, [`POST /${service}/small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`, 'hello'], { gapMs: 200, firstResponse: true, timeoutMs: 5000 })
    assert.equal(served.responses.at(-1)?.status, 200, served.text)
    const refused = await rawExchange(enq.port, `POST /bad!name/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`, { timeoutMs: 3000 })
    assert.doesNotMatch(refused.text, /100 Continue/, refused.text)
    assert.equal(refused.responses.length, 1, refused.text)
    assert.equal(refused.responses[0]!.status, 400)
    assert.equal(refused.responses[0]!.headers.connection, 'close')
    assert.equal(refused.closed, true)
  })

  it('the lingering is bounded in time: a client silent for LINGER_IDLE_MS mid-body finds the connection closed', async () => {
    // allowHalfOpen: the client's side stays open after the server's FIN, as a client still writing would.
    const socket = net.connect({ port: enq.port, host: '127.0.0.1', allowHalfOpen: true })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    let failed = false
    socket.on('error', () => { failed = true })
    socket.write(`POST /${service}/up HTTP/1.1\r\nHost: x\r\nContent-Length: ${50 * 1024 * 1024}\r\n\r\n`)
    socket.write(Buffer.alloc(64 * 1024, 120))
    await waitFor(() => Buffer.concat(chunks).toString('latin1').startsWith('HTTP/1.1 413 '), { what: 'the 413' })
    // Time is the subject here: past the idle bound, with a wide margin, the next bytes meet a closed socket.
    await sleep(LINGER_IDLE_MS + 2000)
    // The first write after the close is taken by the kernel; the reset shows on a later one.
    for (let i = 0; i < 50 && !socket.destroyed; i++) {
      socket.write(Buffer.alloc(1024, 120))
      await sleep(100)
    }
    assert.equal(failed, true, 'the server still read after the idle bound')
  })

  it('the lingering is bounded in bytes: past LINGER_MAX_BYTES the connection is closed before the upload ends', async () => {
    // The bound is checked every 50 ms, and loopback carries hundreds of MB in that time on a quiet machine.
    const total = 4 * LINGER_MAX_BYTES
    const socket = net.connect({ port: enq.port, host: '127.0.0.1', allowHalfOpen: true })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    let error: Error | null = null
    socket.on('error', (err) => { error = err })
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(`POST /${service}/up HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\n\r\n`)
    const piece = Buffer.alloc(1024 * 1024, 120)
    let written = 0
    while (written < total && error === null && !socket.destroyed) {
      written += piece.length
      if (!socket.write(piece)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed])
    }
    if (error === null) socket.end()
    await closed
    assert.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 413 /)
    assert.notEqual(error, null, `the whole ${written} bytes were taken`)
  })
})
