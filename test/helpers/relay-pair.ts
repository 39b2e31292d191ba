// The setup most integration and security files share: a broker connection,
// a service the test starts, a dequeuer in front of it and an enqueuer, all
// in-process on free ports, torn down in reverse order and the service's
// queues deleted. Call withRelayPair() inside a describe(): it registers the
// before/after hooks there and returns a handle whose fields are set once
// before() has run.
import { after, before } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from './broker'
import { startEcho, type Behaviour, type Echo } from './echo'
import { startTestDequeuer, startTestEnqueuer, type Env, type TestDequeuer, type TestEnqueuer } from './relay'

export interface RelayPairOptions {
  /** Prefix of the unique service name. */
  readonly prefix: string
  /** What the service does (echoJson by default). */
  readonly behaviour?: Behaviour
  /** Path on the service's origin the dequeuer forwards under ('/base' by default). */
  readonly downstreamPath?: string
  readonly enqueuerEnv?: Env
  readonly dequeuerEnv?: Env
}

export interface RelayPair {
  readonly service: string
  broker: TestBroker
  echo: Echo
  deq: TestDequeuer
  enq: TestEnqueuer
  /** The enqueuer's URL for a path under the service: url('/x') is `${enq.url}/${service}/x`. */
  url: (path?: string) => string
}

export function withRelayPair (opts: RelayPairOptions): RelayPair {
  const service = uniqueService(opts.prefix)
  const pair = {
    service,
    url: (path = '/') => `${pair.enq.url}/${service}${path}`,
  } as RelayPair
  before(async () => {
    pair.broker = await connectBroker()
    pair.echo = await startEcho(opts.behaviour)
    pair.deq = await startTestDequeuer(service, `${pair.echo.url}${opts.downstreamPath ?? '/base'}`, opts.dequeuerEnv)
    await pair.deq.consuming
    pair.enq = await startTestEnqueuer(opts.enqueuerEnv)
  })
  // Each step is guarded: a before() that failed half-way still releases what it started.
  after(async () => {
    await pair.enq?.close()
    await pair.deq?.close()
    await pair.echo?.close()
    if (pair.broker !== undefined) {
      await pair.broker.deleteService(service)
      await pair.broker.close()
    }
  })
  return pair
}
