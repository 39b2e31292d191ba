import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { describeConfig, redactUrl } from '../../src/config/describe'
import { ConfigError, loadConfig, loadDeclareToolConfig, loadDlqToolConfig } from '../../src/config/load'
import { serviceLinkNotices } from '../../src/config/service-links'
import { unknownVariables } from '../../src/config/unknown'
import { SPEC, type VarSpec } from '../../src/config/spec'

const base = { RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'orders', DOWNSTREAM_URL: 'http://127.0.0.1:8080/api' }

function problems (env: Record<string, string>, readFile?: (p: string) => string): Array<{ variable: string, message: string }> {
  try {
    loadConfig(env, readFile)
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    return [...err.problems]
  }
  assert.fail('expected a ConfigError')
}

describe('config', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base)
    assert.equal(c.mode, 'dequeuer')
    assert.equal(c.dequeuer?.downstreamTimeoutMs, 60000)
    assert.equal(c.dequeuer?.maxAttempts, 3)
    assert.equal(c.dequeuer?.queueType, 'classic')
    assert.equal(c.dequeuer?.admin.port, 8001)
    assert.equal(c.broker.heartbeatSeconds, 10)
    assert.deepEqual(c.broker.urls, ['amqp://guest:guest@localhost:5672/%2F'])
    assert.equal(c.enqueuer, null)
    const e = loadConfig({ RELAYQ_MODE: 'enqueuer' })
    assert.equal(e.enqueuer?.port, 8000)
    assert.equal(e.enqueuer?.replyTimeoutMs, 120000)
    assert.equal(e.enqueuer?.maxBodyBytes, 10 * 1024 * 1024)
    assert.equal(e.enqueuer?.services, null)
  })

  it('reads a Kubernetes service link in a port variable as unset, and says so', () => {
    // A Service named rabbitmq, redis or metrics in the namespace sets these in every pod.
    const links = { RABBITMQ_HOST: 'mq', RABBITMQ_PORT: 'tcp://10.96.0.12:5672', REDIS_PORT: 'tcp://10.96.0.13:6379', METRICS_PORT: 'tcp://10.96.0.14:8001' }
    const c = loadConfig({ ...base, ...links })
    assert.deepEqual(c.broker.urls, ['amqp://guest:guest@mq:5672/%2F'])
    assert.equal(c.dequeuer?.admin.port, 8001)
    const notices = serviceLinkNotices(links, Object.keys(SPEC))
    assert.deepEqual(notices.map((n) => n.split('=')[0]), ['RABBITMQ_PORT', 'REDIS_PORT', 'METRICS_PORT'])
    assert.match(notices[0]!, /Kubernetes service link.*enableServiceLinks: false/)
    assert.equal(describeConfig({ ...base, ...links }, 'dequeuer').RABBITMQ_PORT, '5672')
    // Only that exact form: anything else in a port variable is still refused, naming it.
    assert.deepEqual(problems({ ...base, RABBITMQ_PORT: 'tcp://mq' }).map((p) => p.variable), ['RABBITMQ_PORT'])
    assert.deepEqual(problems({ ...base, METRICS_PORT: 'http://x:1' }).map((p) => p.variable), ['METRICS_PORT'])
  })

  it('builds the broker URL from the RABBITMQ_HOST family, encoding credentials and vhost', () => {
    const c = loadConfig({ ...base, RABBITMQ_HOST: 'mq', RABBITMQ_PORT: '5673', RABBITMQ_USER: 'u@x', RABBITMQ_PASSWORD: 'p:w/d', RABBITMQ_VHOST: 'prod' })
    assert.deepEqual(c.broker.urls, ['amqp://u%40x:p%3Aw%2Fd@mq:5673/prod'])
  })

  it('takes several broker URLs', () => {
    const c = loadConfig({ ...base, RABBITMQ_URL: 'amqp://a:b@h1:5672, amqps://a:b@h2:5671/v' })
    assert.deepEqual(c.broker.urls, ['amqp://a:b@h1:5672', 'amqps://a:b@h2:5671/v'])
  })

  it('reports every problem at once, each naming its variable', () => {
    const got = problems({ RELAYQ_MODE: 'dequeuer', DEQUEUER_CONCURRENCY: 'many', DOWNSTREAM_TIMEOUT: '-1', LOG_LEVEL: 'loud' })
    const vars = got.map((p) => p.variable).sort()
    assert.deepEqual(vars, ['DEQUEUER_CONCURRENCY', 'DOWNSTREAM_TIMEOUT', 'DOWNSTREAM_URL', 'LOG_LEVEL', 'SERVICE_NAME'])
  })

  const invalid: Array<[string, string, RegExp]> = [
    ['RELAYQ_MODE', 'both', /one of enqueuer, dequeuer/],
    ['SERVICE_NAME', 'amq.bad', /not a valid service name/],
    ['DOWNSTREAM_URL', 'ftp://x', /http/],
    ['DOWNSTREAM_URL', 'not a url', /absolute/],
    ['DEQUEUER_CONCURRENCY', '0', /from 1/],
    ['DEQUEUER_QUEUE_TYPE', 'stream', /classic, quorum/],
    ['DEQUEUER_DECLARE_QUEUES', 'maybe', /true or false/],
    ['DEQUEUER_RETRY_STATUSES', '503,abc', /integer/],
    ['DEQUEUER_DELIVERY_LIMIT', '2', /must exceed DEQUEUER_MAX_ATTEMPTS/],
    ['DEQUEUER_EXPIRED', 'keep', /dead-letter, drop/],
    ['RABBITMQ_HEARTBEAT_SECONDS', '1.5', /integer/],
    ['RABBITMQ_URL', 'http://mq', /amqp/],
    ['RABBITMQ_RECONNECT_MAX_MS', '10', /at least RABBITMQ_RECONNECT_INITIAL_MS/],
    ['METRICS_PORT', '70000', /65535/],
    ['HEALTH_CHECK_URL', 'mq:5672', /http/],
    ['CIRCUIT_BREAKER_ERROR_PERCENT', '150', /100/],
    ['BATCH_MODE', 'true', /BATCH_DOWNSTREAM_URL|required/],
  ]
  for (const [name, value, message] of invalid) {
    it(`refuses ${name}=${value} with a message naming it`, () => {
      const got = problems({ ...base, [name]: value })
      const mine = got.filter((p) => p.variable === name || (name === 'BATCH_MODE' && p.variable === 'BATCH_DOWNSTREAM_URL'))
      assert.ok(mine.length > 0, `no problem named ${name}: ${JSON.stringify(got)}`)
      assert.match(mine.map((p) => p.message).join(' '), message)
    })
  }

  it('enqueuer variables are checked in enqueuer mode only', () => {
    assert.doesNotThrow(() => loadConfig({ ...base, ENQUEUER_PORT: 'x' }))
    const got = problems({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: 'x', ENQUEUER_SERVICES: 'ok,amq.no', ENQUEUER_MAX_BODY_BYTES: '-1' })
    assert.deepEqual(got.map((p) => p.variable).sort(), ['ENQUEUER_MAX_BODY_BYTES', 'ENQUEUER_PORT', 'ENQUEUER_SERVICES'])
  })

  it('reads secrets from _FILE variants, and refuses both at once', () => {
    const files: Record<string, string> = { '/run/secrets/pw': 's3cr3t\n' }
    const read = (p: string): string => {
      const v = files[p]
      if (v === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' })
      return v
    }
    const c = loadConfig({ ...base, RABBITMQ_PASSWORD_FILE: '/run/secrets/pw' }, read)
    assert.equal(c.broker.urls[0], 'amqp://guest:s3cr3t@localhost:5672/%2F')
    const both = problems({ ...base, RABBITMQ_PASSWORD: 'a', RABBITMQ_PASSWORD_FILE: '/run/secrets/pw' }, read)
    assert.match(both[0]!.message, /both RABBITMQ_PASSWORD and RABBITMQ_PASSWORD_FILE/)
    const missing = problems({ ...base, RABBITMQ_PASSWORD_FILE: '/nope' }, read)
    assert.equal(missing[0]!.variable, 'RABBITMQ_PASSWORD_FILE')
  })

  it('a URL without a scheme is reported as given, with the likely fix, credentials hidden', () => {
    assert.deepEqual(problems({ ...base, DOWNSTREAM_URL: 'localhost:8080' }), [
      { variable: 'DOWNSTREAM_URL', message: 'expected an http:// or https:// URL, got "localhost:8080" (did you mean http://localhost:8080?)' },
    ])
    assert.deepEqual(problems({ ...base, HEALTH_CHECK_URL: 'ftp://u:pw-canary@host/x' }), [
      { variable: 'HEALTH_CHECK_URL', message: 'expected an http:// or https:// URL, got "ftp://[redacted]@host/x"' },
    ])
    assert.doesNotMatch(JSON.stringify(problems({ ...base, DOWNSTREAM_URL: 'u:pw-canary@host:80' })), /pw-canary/)
  })

  it('never echoes a secret in an error', () => {
    const got = problems({ ...base, RABBITMQ_URL: 'http://user:s3cr3t-canary@mq' })
    assert.doesNotMatch(JSON.stringify(got), /s3cr3t-canary/)
  })

  it('redacts secrets in the start-up dump', () => {
    const dump = describeConfig({ ...base, RABBITMQ_URL: 'amqp://u:s3cr3t@h,amqps://u:s3cr3t@h2:5671/v', RABBITMQ_PASSWORD: 'pw-canary' }, 'dequeuer')
    assert.equal(dump.RABBITMQ_URL, 'amqp://u:[redacted]@h,amqps://u:[redacted]@h2:5671/v')
    assert.doesNotMatch(JSON.stringify(dump), /s3cr3t|pw-canary/)
    assert.equal(dump.SERVICE_NAME, 'orders')
    assert.equal(dump.ENQUEUER_PORT, undefined)
  })

  it('the dump leaves out what RABBITMQ_URL makes unused, and redacts a default password too', () => {
    const withUrl = describeConfig({ ...base, RABBITMQ_URL: 'amqp://u:p@h' }, 'dequeuer')
    for (const name of ['RABBITMQ_HOST', 'RABBITMQ_PORT', 'RABBITMQ_USER', 'RABBITMQ_PASSWORD', 'RABBITMQ_VHOST', 'RABBITMQ_TLS']) assert.equal(withUrl[name], undefined, name)
    const defaults = describeConfig(base, 'dequeuer')
    assert.equal(defaults.RABBITMQ_PASSWORD, '[redacted]')
    assert.equal(defaults.RABBITMQ_USER, 'guest')
    assert.doesNotMatch(JSON.stringify(defaults), /guest.*guest/)
    assert.equal(defaults.BATCH_WINDOW_MS, undefined, 'batch settings are unused without BATCH_MODE')
    assert.equal(describeConfig({ ...base, BATCH_MODE: 'true' }, 'dequeuer').BATCH_WINDOW_MS, '20')
    const enq = describeConfig({ RELAYQ_MODE: 'enqueuer', REDIS_URL: 'redis://:r3d1s@cache:6379/0' }, 'enqueuer')
    assert.equal(enq.REDIS_URL, 'redis://:[redacted]@cache:6379/0')
    assert.equal(enq.REDIS_PORT, undefined)
    assert.equal(describeConfig({ RELAYQ_MODE: 'enqueuer', RABBITMQ_PASSWORD_FILE: '/run/pw' }, 'enqueuer').RABBITMQ_PASSWORD, '[redacted]')
  })

  it('redacts credentials in the service URLs: userinfo and query values', () => {
    const dump = describeConfig({
      ...base,
      DOWNSTREAM_URL: 'http://svc:pa55word@127.0.0.1:8080/api?token=t0k3n&x=1',
      HEALTH_CHECK_URL: 'http://127.0.0.1:8080/health?api_key=k3y',
      BATCH_DOWNSTREAM_URL: 'https://user:b4tch@127.0.0.1/batch',
    }, 'dequeuer')
    assert.equal(dump.DOWNSTREAM_URL, 'http://svc:[redacted]@127.0.0.1:8080/api?token=[redacted]&x=[redacted]')
    assert.equal(dump.HEALTH_CHECK_URL, 'http://127.0.0.1:8080/health?api_key=[redacted]')
    assert.equal(dump.BATCH_DOWNSTREAM_URL, 'https://user:[redacted]@127.0.0.1/batch')
    assert.doesNotMatch(JSON.stringify(dump), /pa55word|t0k3n|k3y|b4tch/)
    assert.equal(redactUrl('not a url'), '[redacted]')
  })

  it('names unknown variables with relayq prefixes, with the closest known one', () => {
    const got = unknownVariables({
      ENQUEUER_REPLYTIMEOUT: '5',
      DEQUEUER_CONCURENCY: '4',
      RELAYQ_COLOR: 'blue',
      RABBITMQ_PASSWORD_FILE: '/x',
      // not relayq's: no relayq prefix, or Kubernetes service links, or relayq's own internals
      SERVICE_NAME: 'orders',
      SERVICE_HOST: 'x',
      LOG_FORMAT: 'json',
      HOME: '/root',
      RABBITMQ_SERVICE_HOST: '10.0.0.1',
      RABBITMQ_SERVICE_PORT_AMQP: '5672',
      RABBITMQ_PORT_5672_TCP_ADDR: '10.0.0.1',
      REDIS_PORT_6379_TCP: 'tcp://10.0.0.2:6379',
      RELAYQ_TEST_AMQP_URL: 'amqp://127.0.0.1',
    })
    assert.deepEqual(got, [
      { variable: 'DEQUEUER_CONCURENCY', closest: 'DEQUEUER_CONCURRENCY' },
      { variable: 'ENQUEUER_REPLYTIMEOUT', closest: 'ENQUEUER_REPLY_TIMEOUT' },
      { variable: 'RELAYQ_COLOR', closest: null },
    ])
  })

  it('returns a frozen object', () => {
    const c = loadConfig(base)
    assert.throws(() => { (c as { mode: string }).mode = 'enqueuer' })
  })

  it('the dlq tool needs no mode', () => {
    assert.equal(loadDlqToolConfig({ DEQUEUER_QUEUE_TYPE: 'quorum' }).queueType, 'quorum')
  })

  it('scale from zero: refuse by default, wait and its bounds when asked, the scaler off unless given a port', () => {
    assert.deepEqual(loadConfig({ RELAYQ_MODE: 'enqueuer' }).enqueuer?.coldStart, { noConsumers: 'refuse', maxWaiting: 1000, scalerPort: null })
    assert.deepEqual(loadConfig({ RELAYQ_MODE: 'enqueuer', ENQUEUER_NO_CONSUMERS: 'wait', ENQUEUER_MAX_WAITING: '5', KEDA_SCALER_PORT: '9090' }).enqueuer?.coldStart, { noConsumers: 'wait', maxWaiting: 5, scalerPort: 9090 })
    assert.deepEqual(problems({ RELAYQ_MODE: 'enqueuer', ENQUEUER_NO_CONSUMERS: 'hold', ENQUEUER_MAX_WAITING: '0', KEDA_SCALER_PORT: '70000' }).map((p) => p.variable),
      ['ENQUEUER_NO_CONSUMERS', 'ENQUEUER_MAX_WAITING', 'KEDA_SCALER_PORT'])
    assert.equal(loadConfig(base).dequeuer?.maxLength, 0)
    assert.equal(loadConfig({ ...base, DEQUEUER_MAX_LENGTH: '500' }).dequeuer?.maxLength, 500)
    assert.deepEqual(problems({ ...base, DEQUEUER_MAX_LENGTH: '-1' }).map((p) => p.variable), ['DEQUEUER_MAX_LENGTH'])
  })

  it('the declare tool reads the dequeuer\'s topology variables, without a mode', () => {
    const c = loadDeclareToolConfig({ DEQUEUER_QUEUE_TYPE: 'quorum', DEQUEUER_MAX_LENGTH: '10' })
    assert.equal(c.queueType, 'quorum')
    assert.equal(c.maxLength, 10)
    assert.equal(c.deliveryLimit, 20)
    assert.throws(() => loadDeclareToolConfig({ DEQUEUER_DELIVERY_LIMIT: '2' }), /DEQUEUER_DELIVERY_LIMIT/)
  })

  it('ENQUEUER_MAX_URL_BYTES above ENQUEUER_MAX_HEADER_BYTES is a problem when set, and follows it when defaulted', () => {
    assert.deepEqual(problems({ RELAYQ_MODE: 'enqueuer', ENQUEUER_MAX_HEADER_BYTES: '4096', ENQUEUER_MAX_URL_BYTES: '8000' }), [
      { variable: 'ENQUEUER_MAX_URL_BYTES', message: 'must be at most ENQUEUER_MAX_HEADER_BYTES (4096): the request line counts toward it' },
    ])
    assert.equal(loadConfig({ RELAYQ_MODE: 'enqueuer', ENQUEUER_MAX_HEADER_BYTES: '4096' }).enqueuer?.maxUrlBytes, 4096)
    assert.equal(loadConfig({ RELAYQ_MODE: 'enqueuer', ENQUEUER_MAX_HEADER_BYTES: '4096', ENQUEUER_MAX_URL_BYTES: '4096' }).enqueuer?.maxUrlBytes, 4096)
  })

  it('each default is written once, in the spec: the loader has no fallback for a variable that has one', () => {
    const source = readFileSync('src/config/load.ts', 'utf8')
    const fallbacks = [...source.matchAll(/r\.(?:get|need)\('([A-Z0-9_]+)'[^)]*\)\s*\?\?/g)].map((m) => m[1]!)
    for (const name of fallbacks) assert.equal((SPEC as Record<string, VarSpec>)[name]?.default, undefined, `load.ts repeats the default of ${name}`)
    // Every default the spec gives is the one the loader applies.
    const e = loadConfig({ RELAYQ_MODE: 'enqueuer' }).enqueuer!
    assert.equal(e.queueCheckTtlMs, Number(SPEC.ENQUEUER_QUEUE_CHECK_TTL_MS.default))
    assert.equal(e.maxUrlBytes, Number(SPEC.ENQUEUER_MAX_URL_BYTES.default))
  })

  it('an invalid value is a problem even where a default exists, and the rest is still checked', () => {
    assert.deepEqual(problems({ ...base, DEQUEUER_MAX_ATTEMPTS: 'x', DEQUEUER_DELIVERY_LIMIT: '2' }).map((p) => p.variable), ['DEQUEUER_MAX_ATTEMPTS', 'DEQUEUER_DELIVERY_LIMIT'])
  })

  it('every variable has a doc line and parses its own default', () => {
    for (const spec of Object.values(SPEC) as VarSpec[]) {
      assert.ok(spec.doc.length > 10, spec.name)
      if (spec.default !== undefined) assert.doesNotThrow(() => (spec.parse as (r: string) => unknown)(spec.default!), spec.name)
    }
  })
})
