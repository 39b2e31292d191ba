// Clients that ask for large answers and never read them. Each answer's
// bytes stay in the enqueuer until the client reads them, so: answers being
// written are bounded per process (ENQUEUER_MAX_BUFFERED_BYTES, then 503
// RQ_ERR_SEND_BUFFER_FULL), an answer that makes no progress for
// ENQUEUER_SEND_TIMEOUT_MS is abandoned and its connection closed, and the
// request keeps its in-flight slot until then.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const BODY = 5 * 1024 * 1024
const MAX_BUFFERED = 20 * 1024 * 1024
const SEND_TIMEOUT_MS = 3000
const CONNECTIONS = 30
const MiB = 1024 * 1024

interface Reader {
  readonly socket: net.Socket
  /** The status line of the answer, once its first bytes arrived. */
  readonly status: Promise<string>
  readonly closed: Promise<void>
}

/** Sends a GET and reads only the first bytes of the answer, then stops reading for good. */
function stalledReader (port: number, path: string): Reader {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  const status = new Promise<string>((resolve) => {
    socket.once('data', (chunk: Buffer) => {
      socket.pause()
      resolve(chunk.toString('latin1').split('\r\n')[0] ?? '')
    })
  })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
  return { socket, status, closed }
}

/** A dequeuer whose service answers every request with BODY bytes of `contentType`, and an enqueuer with the send limits. */
async function startRelay (prefix: string, contentType: string, enqEnv: Record<string, string>): Promise<{ enq: TestEnqueuer, service: string, close: () => Promise<void> }> {
  const broker = await connectBroker()
  const service = uniqueService(prefix)
  const big = Buffer.alloc(BODY, 97)
  const echo: Echo = await startEcho((_req, res) => {
    res.writeHead(200, { 'content-type': contentType, 'content-length': big.length })
    res.end(big)
  })
  const deq: TestDequeuer = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_REPLY_BYTES: String(8 * MiB) })
  await deq.consuming
  const enq = await startTestEnqueuer({ ENQUEUER_MAX_BUFFERED_BYTES: String(MAX_BUFFERED), ENQUEUER_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS), ...enqEnv })
  const close = async (): Promise<void> => {
    const results = enq.context.jobs?.resultsQueue
    await enq.close()
    await deq.close()
    await echo.close()
    if (results !== undefined) await broker.channel().then(async (ch) => { await ch.deleteQueue(results); await ch.close() }).catch(() => {})
    await broker.deleteService(service)
    await broker.close()
  }
  return { enq, service, close }
}

describe('slow readers: answers nobody reads are bounded', () => {
  let enq: TestEnqueuer
  let service = ''
  let close = async (): Promise<void> => {}

  before(async () => {
    ({ enq, service, close } = await startRelay('slowread', 'application/octet-stream', { ASYNC_JOBS: 'false' }))
    assert.equal((await send(`${enq.url}/${service}/warm`)).body.length, BODY)
  })

  after(async () => { await close() })

  it(`${CONNECTIONS} connections x 5 MB unread: buffered bytes stay bounded, the rest get 503, every stalled answer is abandoned after the send timeout`, async () => {
    global.gc?.()
    const rssBefore = process.memoryUsage().rss
    const readers: Reader[] = []
    const statuses: string[] = []
    let peakBuffered = 0
    // One at a time, so each admission sees the answers already being written.
    for (let i = 0; i < CONNECTIONS; i++) {
      const r = stalledReader(enq.port, `/${service}/big-${i}`)
      readers.push(r)
      statuses.push(await r.status)
      peakBuffered = Math.max(peakBuffered, enq.context.sender.bufferedBytes)
    }
    const rssPeak = process.memoryUsage().rss
    const stalled = statuses.filter((s) => s.startsWith('HTTP/1.1 200'))
    const refused = statuses.filter((s) => s.startsWith('HTTP/1.1 503'))
    assert.equal(stalled.length + refused.length, CONNECTIONS, statuses.join('\n'))
    assert.ok(refused.length > 0, 'no request was refused')
    // At most the limit, plus the one answer admitted just under it.
    assert.ok(peakBuffered <= MAX_BUFFERED + BODY, `peak ${peakBuffered} bytes buffered`)
    assert.ok(enq.admission.inflight >= 1, 'stalled answers no longer hold their in-flight slots')
    const metrics = (await send(`${enq.url}/metrics`)).body.toString()
    assert.match(metrics, /reason="send_buffer_full"/)
    // Past the send timeout every stalled answer is abandoned: its bytes and its slot are freed.
    await waitFor(() => enq.context.sender.bufferedBytes === 0 && enq.admission.inflight === 0, { timeoutMs: SEND_TIMEOUT_MS + 15000, what: 'buffers and slots freed' })
    // And its connection was closed short of the whole answer.
    for (const [i, r] of readers.entries()) {
      if (!statuses[i]!.startsWith('HTTP/1.1 200')) {
        r.socket.destroy()
        continue
      }
      let received = 0
      r.socket.on('data', (c: Buffer) => { received += c.length })
      r.socket.resume()
      await r.closed
      assert.ok(received < BODY, `connection ${i} got its whole answer`)
    }
    const after = (await send(`${enq.url}/metrics`)).body.toString()
    assert.match(after, new RegExp(`^enqueuer_send_timeouts_total ${stalled.length}$`, 'm'))
    assert.equal((await send(`${enq.url}/${service}/after`)).status, 200)
    console.log(`# ${CONNECTIONS} x ${BODY / MiB} MiB unread: ${stalled.length} stalled, ${refused.length} refused 503; ` +
      `peak buffered ${(peakBuffered / MiB).toFixed(1)} MiB (limit ${MAX_BUFFERED / MiB}); ` +
      `RSS ${(rssBefore / MiB).toFixed(0)} -> ${(rssPeak / MiB).toFixed(0)} -> ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB after the send timeout`)
  })
})

describe('slow readers of job results: GET /jobs/{id} answers are bounded the same way', () => {
  let enq: TestEnqueuer
  let service = ''
  let close = async (): Promise<void> => {}
  let jobId = ''

  before(async () => {
    ({ enq, service, close } = await startRelay('slowjob', 'text/plain', { ASYNC_MAX_RESULT_BYTES: String(8 * MiB) }))
    const accepted = await send(`${enq.url}/${service}/job`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(accepted.status, 202)
    jobId = accepted.json<{ job_id: string }>().job_id
    await waitFor(async () => (await send(`${enq.url}/jobs/${jobId}`)).json<{ status: string }>().status === 'completed', { what: 'the job to complete' })
  })

  after(async () => { await close() })

  it(`${CONNECTIONS} unread reads of a 5 MB result: counted against the buffer limit, refused past it, abandoned after the send timeout`, async () => {
    const readers: Reader[] = []
    const statuses: string[] = []
    let peakBuffered = 0
    for (let i = 0; i < CONNECTIONS; i++) {
      const r = stalledReader(enq.port, `/jobs/${jobId}`)
      readers.push(r)
      statuses.push(await r.status)
      peakBuffered = Math.max(peakBuffered, enq.context.sender.bufferedBytes)
    }
    const stalled = statuses.filter((s) => s.startsWith('HTTP/1.1 200'))
    const refused = statuses.filter((s) => s.startsWith('HTTP/1.1 503'))
    assert.equal(stalled.length + refused.length, CONNECTIONS, statuses.join('\n'))
    assert.ok(refused.length > 0, 'no read was refused: job answers are not counted')
    assert.ok(peakBuffered <= MAX_BUFFERED + BODY + MiB, `peak ${peakBuffered} bytes buffered`)
    await waitFor(() => enq.context.sender.bufferedBytes === 0, { timeoutMs: SEND_TIMEOUT_MS + 15000, what: 'buffers freed' })
    // Every stalled answer's connection was closed by the enqueuer; a refused one may be kept alive, and is closed here.
    for (const [i, r] of readers.entries()) {
      if (!statuses[i]!.startsWith('HTTP/1.1 200')) r.socket.destroy()
      r.socket.resume()
      await r.closed
    }
    const metrics = (await send(`${enq.url}/metrics`)).body.toString()
    assert.match(metrics, new RegExp(`^enqueuer_send_timeouts_total ${stalled.length}$`, 'm'))
    // A client that reads gets the whole result.
    const whole = await send(`${enq.url}/jobs/${jobId}`)
    assert.equal(whole.status, 200)
    assert.equal(whole.json<{ result: { body: string } }>().result.body.length, BODY)
    console.log(`# ${CONNECTIONS} unread job reads: ${stalled.length} stalled, ${refused.length} refused 503; peak buffered ${(peakBuffered / MiB).toFixed(1)} MiB`)
  })
})
