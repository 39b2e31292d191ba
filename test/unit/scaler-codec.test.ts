// The hand-written protobuf codec of the KEDA scaler against the .proto, as
// protobufjs (through @grpc/proto-loader, a dev dependency) encodes it.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { MethodDefinition } from '@grpc/proto-loader'
import * as codec from '../../src/enqueuer/scaler/codec'
import { loadScalerProto } from '../helpers/keda-scaler'

const service = loadScalerProto()['externalscaler.ExternalScaler'] as unknown as Record<string, MethodDefinition<unknown, unknown>>
const m = (name: string): MethodDefinition<unknown, unknown> => service[name]!

describe('KEDA external scaler codec', () => {
  const ref = { name: 'orders', namespace: 'prod', scalerMetadata: { service: 'orders.v2', targetSize: '7', 'é-ü': 'ünïcode' } }

  it('decodes a ScaledObjectRef as protobufjs encodes it, map included', () => {
    const bytes = m('IsActive').requestSerialize(ref)
    assert.deepEqual({ ...codec.decodeScaledObjectRef(bytes), scalerMetadata: { ...codec.decodeScaledObjectRef(bytes).scalerMetadata } }, ref)
    assert.deepEqual(codec.decodeScaledObjectRef(Buffer.alloc(0)).name, '')
  })

  it('decodes a GetMetricsRequest', () => {
    const bytes = m('GetMetrics').requestSerialize({ scaledObjectRef: ref, metricName: 's0-relayq-orders' })
    const got = codec.decodeGetMetricsRequest(bytes)
    assert.equal(got.metricName, 's0-relayq-orders')
    assert.equal(got.scaledObjectRef.scalerMetadata.service, 'orders.v2')
  })

  it('encodes what protobufjs decodes: IsActiveResponse, GetMetricSpecResponse, GetMetricsResponse', () => {
    assert.deepEqual(m('IsActive').responseDeserialize(codec.encodeIsActiveResponse(true)), { result: true })
    assert.deepEqual(m('IsActive').responseDeserialize(codec.encodeIsActiveResponse(false)), { result: false })
    assert.deepEqual(m('GetMetricSpec').responseDeserialize(codec.encodeGetMetricSpecResponse([{ metricName: 'relayq-orders', targetSize: 10 }])),
      { metricSpecs: [{ metricName: 'relayq-orders', targetSize: 10, targetSizeFloat: 10 }] })
    const big = 2 ** 40 + 3
    assert.deepEqual(m('GetMetrics').responseDeserialize(codec.encodeGetMetricsResponse([{ metricName: 'a', metricValue: big }, { metricName: 'b', metricValue: 0 }])),
      { metricValues: [{ metricName: 'a', metricValue: big, metricValueFloat: big }, { metricName: 'b', metricValue: 0, metricValueFloat: 0 }] })
  })

  it('skips fields it does not know, and refuses truncated or lying lengths', () => {
    // field 9 (varint), field 10 (fixed64), field 11 (fixed32), then name.
    const extra = Buffer.concat([Buffer.from([0x48, 0x05, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5d, 1, 2, 3, 4]), m('IsActive').requestSerialize({ name: 'x' })])
    assert.equal(codec.decodeScaledObjectRef(extra).name, 'x')
    assert.throws(() => codec.decodeScaledObjectRef(Buffer.from([0x0a, 0x05, 0x61])), /length beyond/)
    assert.throws(() => codec.decodeScaledObjectRef(Buffer.from([0x0a])), /truncated/)
    assert.throws(() => codec.decodeScaledObjectRef(Buffer.from([0x0f])), /wire type/)
  })

  it('bounds the metadata map', () => {
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, 'v']))
    assert.throws(() => codec.decodeScaledObjectRef(m('IsActive').requestSerialize({ scalerMetadata: many })), /too many/)
  })
})
