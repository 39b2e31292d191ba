// KEDA's side of the external scaler protocol, for the tests: grpc-js with
// the .proto loaded by @grpc/proto-loader (both dev dependencies), so the
// enqueuer's hand-written server and codec are checked against real gRPC.
import { resolve } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

export const PROTO = resolve(__dirname, '../../proto/externalscaler.proto')

export function loadScalerProto (): protoLoader.PackageDefinition {
  // longs as numbers and defaults filled in: what a Go client would see.
  return protoLoader.loadSync(PROTO, { longs: Number, defaults: true, keepCase: true })
}

export interface ScalerClient {
  isActive: (metadata: Record<string, string>) => Promise<boolean>
  getMetricSpec: (metadata: Record<string, string>) => Promise<Array<{ metricName: string, targetSize: number, targetSizeFloat: number }>>
  getMetrics: (metadata: Record<string, string>, metricName: string) => Promise<Array<{ metricName: string, metricValue: number, metricValueFloat: number }>>
  /** Opens StreamIsActive; `onValue` hears every pushed value; the returned function hangs up. */
  stream: (metadata: Record<string, string>, onValue: (active: boolean) => void, onError?: (err: grpc.ServiceError) => void) => () => void
  close: () => void
}

type Unary = (req: unknown, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void

export function scalerClient (port: number): ScalerClient {
  const pkg = grpc.loadPackageDefinition(loadScalerProto()) as unknown as { externalscaler: { ExternalScaler: grpc.ServiceClientConstructor } }
  const client = new pkg.externalscaler.ExternalScaler(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, Unary> & grpc.Client
  const ref = (scalerMetadata: Record<string, string>): Record<string, unknown> => ({ name: 'so', namespace: 'default', scalerMetadata })
  const call = <T>(name: string, req: unknown, pick: (r: Record<string, unknown>) => T): Promise<T> => new Promise((resolveCall, reject) => {
    client[name]!.call(client, req, (err, res) => { if (err !== null) reject(err); else resolveCall(pick(res)) })
  })
  return {
    isActive: (m) => call('IsActive', ref(m), (r) => r.result as boolean),
    getMetricSpec: (m) => call('GetMetricSpec', ref(m), (r) => r.metricSpecs as never),
    getMetrics: (m, metricName) => call('GetMetrics', { scaledObjectRef: ref(m), metricName }, (r) => r.metricValues as never),
    stream: (m, onValue, onError) => {
      const s = (client as unknown as { StreamIsActive: (req: unknown) => grpc.ClientReadableStream<{ result: boolean }> }).StreamIsActive(ref(m))
      s.on('data', (r: { result: boolean }) => onValue(r.result))
      s.on('error', (err: grpc.ServiceError) => { if (err.code !== grpc.status.CANCELLED) onError?.(err) })
      return () => s.cancel()
    },
    close: () => client.close(),
  }
}
