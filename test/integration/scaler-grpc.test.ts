// The KEDA scaler's gRPC server with what a broken or hostile peer sends,
// over raw HTTP/2, and the four calls through grpc-js: a bad call costs only
// itself, with a gRPC status that says why. The broker is a stand-in here
// (the state function); test/process/scale-to-zero.test.ts runs it for real.
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { startScaler, type RunningScaler } from '../../src/enqueuer/scaler/server'
import { scalerClient, type ScalerClient } from '../helpers/keda-scaler'
import { waitFor } from '../helpers/wait'

interface Raw { status: number, headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader, trailers: http2.IncomingHttpHeaders }

describe('KEDA scaler gRPC server', () => {
  let scaler: RunningScaler
  let keda: ScalerClient
  const queue = { messages: 3 }

  before(async () => {
    scaler = await startScaler(0, '127.0.0.1', {
      logger: pino({ level: 'silent' }),
      coldStart: null,
      state: (q) => q === 'gone_requests' ? Promise.reject(new Error('no broker')) : { exists: true, consumers: 0, messages: queue.messages },
      services: null,
    })
    keda = scalerClient(scaler.port)
  })

  after(() => {
    keda.close()
    scaler.close()
  })

  function raw (path: string, body: Buffer, contentType = 'application/grpc'): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${scaler.port}`)
      session.on('error', reject)
      const req = session.request({ ':method': 'POST', ':path': path, 'content-type': contentType, te: 'trailers' })
      let headers: Raw['headers'] = {}
      let trailers: http2.IncomingHttpHeaders = {}
      req.on('response', (h) => { headers = h })
      req.on('trailers', (t) => { trailers = t })
      req.on('data', () => {})
      req.on('end', () => {
        session.close()
        resolve({ status: Number(headers[':status']), headers, trailers })
      })
      req.on('error', reject)
      req.end(body)
    })
  }
  const frame = (m: Buffer, compressed = 0): Buffer => Buffer.concat([Buffer.from([compressed, 0, 0, 0, m.length]), m])
  const grpcStatus = (r: Raw): string | undefined => String(r.headers['grpc-status'] ?? r.trailers['grpc-status'])
  const IS_ACTIVE = '/externalscaler.ExternalScaler/IsActive'
  // scalerMetadata { "service": "orders" }
  const ref = Buffer.from([0x1a, 0x11, 0x0a, 0x07, ...Buffer.from('service'), 0x12, 0x06, ...Buffer.from('orders')])

  it('answers the four calls as KEDA (grpc-js with the .proto) asks them', async () => {
    assert.equal(await keda.isActive({ service: 'orders' }), true)
    assert.deepEqual(await keda.getMetricSpec({ service: 'orders' }), [{ metricName: 'relayq-orders', targetSize: 10, targetSizeFloat: 10 }])
    assert.deepEqual(await keda.getMetrics({ service: 'orders' }, 's0-relayq-orders'), [{ metricName: 's0-relayq-orders', metricValue: 3, metricValueFloat: 3 }])
    const seen: boolean[] = []
    const hangUp = keda.stream({ service: 'orders' }, (v) => seen.push(v))
    await waitFor(() => seen.length === 1, { what: 'the state on open' })
    queue.messages = 0
    await waitFor(() => seen.length === 2, { what: 'the change, pushed', timeoutMs: 5000 })
    assert.deepEqual(seen, [true, false])
    hangUp()
    queue.messages = 3
  })

  it('a broker it cannot ask is UNAVAILABLE, not an error of the server', async () => {
    await assert.rejects(keda.isActive({ service: 'gone' }), (err: { code?: number }) => err.code === 14)
  })

  it('refuses what is not gRPC, unknown methods, compression, bad protobuf and oversized requests, each with its status', async () => {
    assert.equal((await raw(IS_ACTIVE, frame(ref), 'text/plain')).status, 415)
    assert.equal(grpcStatus(await raw('/externalscaler.ExternalScaler/Nope', frame(ref))), '12')
    assert.equal(grpcStatus(await raw(IS_ACTIVE, frame(ref, 1))), '12')
    assert.equal(grpcStatus(await raw(IS_ACTIVE, Buffer.from([0, 0, 0]))), '13')
    assert.equal(grpcStatus(await raw(IS_ACTIVE, frame(Buffer.from([0x0a, 0x09, 0x61])))), '3')
    assert.equal(grpcStatus(await raw(IS_ACTIVE, Buffer.alloc(70 * 1024))), '8')
    // Still serving.
    const ok = await raw(IS_ACTIVE, frame(ref))
    assert.equal(ok.status, 200)
    assert.equal(grpcStatus(ok), '0')
  })
})
