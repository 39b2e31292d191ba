// KEDA's external scaler protocol (the `external-push` trigger), served on
// KEDA_SCALER_PORT: KEDA polls a scaler every pollingInterval (30 s by
// default), which would dominate a cold start; over StreamIsActive this
// enqueuer tells it "active" as soon as a request waits for a service at zero.
//
// The scaled object's metadata names the service (`service`, required) and
// the target per replica (`targetSize`, default 10). A service is active when
// its queue holds ready messages (asked of the broker, so every enqueuer
// replica gives the same answer) or a request waits for it in this process.
// A passive declare counts ready messages only, not unacknowledged ones: a
// busy last pod looks idle here, so the scale-to-zero manifests keep the
// rabbitmq trigger (protocol http, which counts both) beside this one.
import type { Logger } from 'pino'
import { requestQueue } from '../../amqp/topology'
import { isValidServiceName } from '../../config/parsers'
import type { ColdStart } from '../cold-start'
import type { QueueState } from '../queue-check'
import * as codec from './codec'
import { GrpcError, Status, createGrpcServer, type Route } from './grpc'
import { listen } from '../../http/server'

/** How often an open stream asks the broker, besides being told at once of a waiting request. */
const STREAM_POLL_MS = 1000
const DEFAULT_TARGET = 10
const PREFIX = '/externalscaler.ExternalScaler/'

export interface ScalerDeps {
  readonly logger: Logger
  readonly coldStart: ColdStart | null
  readonly state: (queue: string) => QueueState | Promise<QueueState>
  /** ENQUEUER_SERVICES: a scaled object may only name a service served here. */
  readonly services: ReadonlySet<string> | null
}

export interface RunningScaler {
  readonly port: number
  close: () => void
}

export class Scaler {
  constructor (private readonly deps: ScalerDeps) {}

  serviceOf (ref: codec.ScaledObjectRef): string {
    const service = ref.scalerMetadata.service
    if (service === undefined || !isValidServiceName(service)) throw new GrpcError(Status.INVALID_ARGUMENT, 'the scaled object\'s metadata must name a valid `service`')
    if (this.deps.services !== null && !this.deps.services.has(service)) throw new GrpcError(Status.INVALID_ARGUMENT, `service ${service} is not served by this enqueuer (ENQUEUER_SERVICES)`)
    return service
  }

  /** Ready messages in the queue, or the requests waiting here, whichever is more. */
  async demand (service: string): Promise<number> {
    const local = this.deps.coldStart?.waiting(service) ?? 0
    const state = await this.deps.state(requestQueue(service))
    return Math.max(local, state.exists ? state.messages ?? 0 : 0)
  }

  async isActive (service: string): Promise<boolean> {
    // A request waiting here needs no broker round trip to say so.
    if ((this.deps.coldStart?.waiting(service) ?? 0) > 0) return true
    return await this.demand(service) > 0
  }

  /** Pushes the state on open, at once on a first waiting request, and on every change seen by the poll. */
  stream (service: string, write: (active: boolean) => void): () => void {
    let last: boolean | null = null
    let closed = false
    const push = (active: boolean): void => {
      if (closed || active === last) return
      last = active
      write(active)
    }
    const check = (): void => { this.isActive(service).then(push, () => {}) }
    const off = this.deps.coldStart?.onWaiting((s) => { if (s === service) push(true) })
    const timer = setInterval(check, STREAM_POLL_MS)
    check()
    return () => {
      closed = true
      clearInterval(timer)
      off?.()
    }
  }

  routes (): Map<string, Route> {
    const ref = (b: Buffer): codec.ScaledObjectRef => decoded(() => codec.decodeScaledObjectRef(b))
    return new Map<string, Route>([
      [PREFIX + 'IsActive', { unary: async (b) => codec.encodeIsActiveResponse(await this.asked(() => this.isActive(this.serviceOf(ref(b))))) }],
      [PREFIX + 'StreamIsActive', {
        streaming: (b, write, fail) => {
          let service: string
          try {
            service = this.serviceOf(ref(b))
          } catch (err) {
            fail(err as Error)
            return () => {}
          }
          return this.stream(service, (active) => write(codec.encodeIsActiveResponse(active)))
        },
      }],
      [PREFIX + 'GetMetricSpec', {
        unary: async (b) => {
          const r = ref(b)
          const service = this.serviceOf(r)
          const target = Number(r.scalerMetadata.targetSize ?? DEFAULT_TARGET)
          if (!Number.isInteger(target) || target < 1) throw new GrpcError(Status.INVALID_ARGUMENT, '`targetSize` must be a positive integer')
          return codec.encodeGetMetricSpecResponse([{ metricName: metricName(service), targetSize: target }])
        },
      }],
      [PREFIX + 'GetMetrics', {
        unary: async (b) => {
          const req = decoded(() => codec.decodeGetMetricsRequest(b))
          const service = this.serviceOf(req.scaledObjectRef)
          const value = await this.asked(() => this.demand(service))
          return codec.encodeGetMetricsResponse([{ metricName: req.metricName === '' ? metricName(service) : req.metricName, metricValue: value }])
        },
      }],
    ])
  }

  /** A broker that cannot be asked is UNAVAILABLE to KEDA (it keeps the last scale), not an internal error. */
  private async asked<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (err instanceof GrpcError) throw err
      this.deps.logger.debug({ err: (err as Error).message }, 'scaler could not ask the broker')
      throw new GrpcError(Status.UNAVAILABLE, 'the broker cannot be asked now')
    }
  }
}

function decoded<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `malformed message: ${(err as Error).message}`)
  }
}

/** An HPA metric name: KEDA prefixes it (s0-...); lower case letters, digits and dashes. */
function metricName (service: string): string {
  return `relayq-${service.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`
}

export async function startScaler (port: number, host: string, deps: ScalerDeps): Promise<RunningScaler> {
  const server = createGrpcServer(new Scaler(deps).routes(), (err) => deps.logger.error({ err: err.message }, 'KEDA scaler call failed'))
  const bound = await listen(server.server, port, host, { port: 'KEDA_SCALER_PORT', host: 'ENQUEUER_HOST', logger: deps.logger })
  return { port: bound, close: () => server.close() }
}
