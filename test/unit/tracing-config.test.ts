// The OTEL_* variables: off unless asked for, the OTLP exporter spec's endpoint
// rules, and every bad value refused naming its variable.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { ConfigError, loadConfig } from '../../src/config/load'
import { createLogger } from '../../src/log'
import { createTracingMetrics } from '../../src/metrics/tracing'
import { createTracing, type Tracing } from '../../src/tracing/tracing'

const base = { RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'orders', DOWNSTREAM_URL: 'http://127.0.0.1:8080/api' }

function problems (env: Record<string, string>): string[] {
  try {
    loadConfig(env)
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    return err.problems.map((p) => `${p.variable}: ${p.message}`)
  }
  assert.fail('expected a ConfigError')
}

describe('tracing config', () => {
  it('is off by default, and with OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true whatever else is set', () => {
    assert.equal(loadConfig(base).tracing, null)
    assert.equal(loadConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).tracing, null)
    assert.equal(loadConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).tracing, null)
  })

  it('an endpoint turns it on: the general one gets /v1/traces, the traces one is used as given and wins', () => {
    assert.equal(loadConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).tracing?.url, 'http://c:4318/v1/traces')
    assert.equal(loadConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/otlp/' }).tracing?.url, 'http://c:4318/otlp/v1/traces')
    assert.equal(loadConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:9/in' }).tracing?.url, 'http://t:9/in')
    const t = loadConfig({ ...base, OTEL_TRACES_EXPORTER: 'otlp' }).tracing
    assert.equal(t?.url, 'http://localhost:4318/v1/traces')
    assert.equal(t?.protocol, 'http/protobuf')
    assert.equal(t?.sampler, 'parentbased_always_on')
    assert.equal(t?.serviceName, 'relayq-dequeuer')
    assert.equal(t?.maxQueueSize, 2048)
  })

  it('reads the protocol, headers, resource and service name as OTel defines them', () => {
    const t = loadConfig({
      ...base, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20x, x-tenant=a',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-resource,deployment.environment.name=prod',
    }).tracing
    assert.equal(t?.protocol, 'http/json')
    assert.deepEqual(t?.headers, { authorization: 'Bearer x', 'x-tenant': 'a' })
    assert.equal(t?.serviceName, 'from-resource')
    assert.equal(t?.resource['deployment.environment.name'], 'prod')
    assert.equal(loadConfig({ ...base, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }).tracing?.protocol, 'http/protobuf')
    assert.equal(loadConfig({ ...base, OTEL_TRACES_EXPORTER: 'otlp', OTEL_SERVICE_NAME: 'edge', OTEL_RESOURCE_ATTRIBUTES: 'service.name=x' }).tracing?.serviceName, 'edge')
  })

  it('refuses bad values, naming the variable (a secret\'s value is not echoed)', () => {
    const on = { ...base, OTEL_TRACES_EXPORTER: 'otlp' }
    assert.match(problems({ ...on, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' }).join(), /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: expected one of http\/protobuf, http\/json/)
    assert.match(problems({ ...on, OTEL_TRACES_EXPORTER: 'jaeger' }).join(), /^OTEL_TRACES_EXPORTER:/)
    assert.match(problems({ ...on, OTEL_TRACES_SAMPLER: 'sometimes' }).join(), /^OTEL_TRACES_SAMPLER:/)
    assert.match(problems({ ...on, OTEL_TRACES_SAMPLER_ARG: '1.5' }).join(), /^OTEL_TRACES_SAMPLER_ARG: expected a number from 0 to 1/)
    assert.match(problems({ ...on, OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }).join(), /^OTEL_EXPORTER_OTLP_ENDPOINT:/)
    assert.match(problems({ ...on, OTEL_RESOURCE_ATTRIBUTES: 'novalue' }).join(), /^OTEL_RESOURCE_ATTRIBUTES: expected key=value/)
    assert.deepEqual(problems({ ...on, OTEL_EXPORTER_OTLP_HEADERS: 'authorization=%E0%A4%A' }), ['OTEL_EXPORTER_OTLP_HEADERS: invalid value'])
    assert.match(problems({ ...on, OTEL_SDK_DISABLED: 'maybe' }).join(), /^OTEL_SDK_DISABLED:/)
    assert.match(problems({ ...on, OTEL_BSP_MAX_QUEUE_SIZE: '0' }).join(), /^OTEL_BSP_MAX_QUEUE_SIZE:/)
  })

  it('samples as the sampler it names: the ratio one keeps about that share of random trace ids', async () => {
    const tracing = (sampler: string, ratio: string): Tracing => {
      const cfg = loadConfig({ ...base, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_SAMPLER_ARG: ratio })
      return createTracing(cfg.tracing, 'dequeuer', createTracingMetrics(null), createLogger('silent'))!
    }
    const off = tracing('always_off', '1')
    const ratio = tracing('traceidratio', '0.1')
    assert.equal(off.samples(null, 'a'.repeat(32)), false)
    let kept = 0
    for (let i = 0; i < 1000; i++) if (ratio.samples(null, randomBytes(16).toString('hex'))) kept++
    assert.ok(kept > 50 && kept < 150, `${kept} of 1000 kept at 0.1`)
    await off.shutdown()
    await ratio.shutdown()
  })
})
