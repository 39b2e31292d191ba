// The observability files in deploy/ checked with the real tools: promtool for
// the alert rules and their unit tests, kustomize for the monitoring bundle,
// and a real Prometheus (Debian's) scraping an in-process enqueuer and
// dequeuer and the shared RabbitMQ's rabbitmq_prometheus endpoints.
// promtool and prometheus come from PATH or from .tools/prometheus/usr/bin,
// where scripts/ensure-prometheus.sh unpacks them.
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import YAML from 'yaml'
import { ERROR_CODES, statusOf } from '../../src/errors'
import { createDequeuerMetrics } from '../../src/metrics/dequeuer'
import { createEnqueuerMetrics, reasonOf } from '../../src/metrics/enqueuer'
import { createRegistry } from '../../src/metrics/registry'
import { createTracingMetrics } from '../../src/metrics/tracing'
import { AMQP_URL, connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort } from '../helpers/process'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'
import { reapOnExit } from '../helpers/reaper'

const ROOT = resolve(__dirname, '../..')
const PROM_DIR = join(ROOT, 'deploy/prometheus')
const RULES = join(PROM_DIR, 'relayq.rules.yml')
const RULE_TESTS = join(PROM_DIR, 'relayq.rules.test.yml')
const PROMETHEUS_RULE = join(PROM_DIR, 'prometheusrule.yaml')
const SCRAPE_CONFIG = join(PROM_DIR, 'prometheus.yml')
const SCRAPE_CONFIG_K8S = join(PROM_DIR, 'prometheus-kubernetes.yml')
const RUNBOOK = join(PROM_DIR, 'README.md')
const DASHBOARD = join(ROOT, 'deploy/grafana/relayq.json')
const K8S_DIR = join(ROOT, 'deploy/k8s')
const MONITORING = join(K8S_DIR, 'monitoring')
const OPERATIONS = join(ROOT, 'docs/operations.md')
const RUNBOOK_BASE = 'https://github.com/relayq/relayq/blob/main/deploy/prometheus/README.md'

// ------------------------------------------------------------------ tools

function tool (name: string, hint: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), join(ROOT, '.tools/prometheus/usr/bin')]
  for (const dir of dirs) {
    const path = join(dir, name)
    try {
      accessSync(path, constants.X_OK)
      return path
    } catch {
      // not in this one
    }
  }
  throw new Error(`${name} not found on PATH nor in .tools/prometheus/usr/bin: ${hint}`)
}

const PROMETHEUS_HINT = 'run scripts/ensure-prometheus.sh (it unpacks Debian\'s prometheus package into .tools/prometheus)'

interface Run { code: number, out: string }

function run (cmd: string, args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolveRun) => {
    execFile(cmd, args, { cwd, timeout: 60000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`
      if (err === null) resolveRun({ code: 0, out })
      else resolveRun({ code: typeof err.code === 'number' ? err.code : 1, out: out === '' ? err.message : out })
    })
  })
}

// ------------------------------------------------------------------ files

interface Rule {
  alert: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}
interface RuleGroup { name: string, rules: Rule[] }
interface AlertCase { eval_time: string, alertname: string, exp_alerts?: unknown[] | null }
interface UnitTest { name?: string, interval?: string, input_series: unknown[], alert_rule_test?: AlertCase[], promql_expr_test?: unknown[] }
interface UnitTests { rule_files: string[], evaluation_interval?: string, tests: UnitTest[] }

interface Container { ports?: Array<{ name?: string }> }
interface PodTemplate { metadata?: { labels?: Record<string, string> }, spec?: { containers?: Container[], initContainers?: Container[] } }
interface MetricsEndpoint { port: string, path: string, params?: Record<string, string[]> }
/** The fields these tests read from Kubernetes objects (PrometheusRule, PodMonitor, ConfigMap, workloads). */
interface K8sDoc {
  apiVersion?: string
  kind?: string
  metadata: { name: string, labels?: Record<string, string> }
  data?: Record<string, string>
  spec?: {
    groups?: RuleGroup[]
    template?: PodTemplate
    selector?: { matchLabels?: Record<string, string> }
    namespaceSelector?: { any?: boolean }
    podMetricsEndpoints?: MetricsEndpoint[]
  }
}
interface ScrapeJob {
  job_name: string
  metrics_path?: string
  params?: Record<string, string[]>
  static_configs?: Array<{ targets: string[] }>
  relabel_configs?: Array<{ source_labels?: string[], regex?: string, action?: string }>
}
interface ScrapeConfig { global?: Record<string, string>, rule_files?: string[], scrape_configs: ScrapeJob[] }
interface Variable { name: string, type: string, query?: unknown, includeAll?: boolean }

const yamlFile = <T>(path: string): T => YAML.parse(readFileSync(path, 'utf8')) as T
const yamlDocs = (text: string): K8sDoc[] =>
  YAML.parseAllDocuments(text).map((d) => d.toJS() as K8sDoc | null).filter((d): d is K8sDoc => d !== null)

const groups = yamlFile<{ groups: RuleGroup[] }>(RULES).groups
const alerts = groups.flatMap((g) => g.rules)
const unitTests = yamlFile<UnitTests>(RULE_TESTS)
const dashboardText = readFileSync(DASHBOARD, 'utf8')
const dashboard = JSON.parse(dashboardText) as { panels: Panel[], templating: { list: Variable[] } }

interface Target { expr: string, datasource?: { uid?: string } }
interface Panel { id: number, type: string, title: string, datasource?: { uid?: string }, gridPos: { x: number, y: number, w: number, h: number }, targets?: Target[] }

const dashboardExprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))
/** The metric names the service variable's query reads its values from. */
const variableMetrics = dashboard.templating.list
  .flatMap((v) => [...JSON.stringify(v.query ?? '').matchAll(/__name__=~\\"([^\\]+)\\"/g)].map((m) => m[1]!.split('|')))
  .flat()

// ------------------------------------------------------------------ PromQL

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan'])

/** The metric names an expression selects: identifiers outside strings, matchers and ranges that are not functions or keywords. */
function metricNames (expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = new Set<string>()
  for (const m of bare.matchAll(/(?<![\w.:$])([A-Za-z_:][\w:]*)\b(?!\s*\()/g)) {
    if (!PROMQL_KEYWORDS.has(m[1]!.toLowerCase())) names.add(m[1]!)
  }
  return [...names]
}

/** name -> type, from the `# TYPE` lines of a Prometheus text exposition. */
function exposedTypes (text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!)
  return out
}

function isExposed (name: string, types: Map<string, string>): boolean {
  if (types.has(name)) return true
  const m = /^(.+)_(bucket|sum|count)$/.exec(name)
  return m !== null && (types.get(m[1]!) === 'histogram' || (types.get(m[1]!) === 'summary' && m[2] !== 'bucket'))
}

/** The 5xx codes relayq answers itself (the enqueuer, its HTTP layer, and the dequeuer's replies it relays), read from their source. */
function enqueuerMade5xx (): Set<string> {
  const made = new Set<string>()
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e)
      if (statSync(p).isDirectory()) walk(p)
      else if (p.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/RQ_ERR_[A-Z_]+/g)) made.add(m[0])
    }
  }
  walk(join(ROOT, 'src/enqueuer'))
  walk(join(ROOT, 'src/http'))
  walk(join(ROOT, 'src/dequeuer'))
  return new Set(ERROR_CODES.filter((c) => made.has(c) && is5xxFailure(c) && !NEVER_ANSWERED.has(c)).map(reasonOf))
}

// Written only on a dead-lettered copy (its last error): no client is ever answered with it, so no enqueuer counts it.
const NEVER_ANSWERED = new Set(['RQ_ERR_REPLY_UNROUTABLE'])

// 501 is the answer to a client asking for a protocol upgrade: the client's doing, not a failure.
const is5xxFailure = (code: (typeof ERROR_CODES)[number]): boolean => statusOf(code) >= 500 && statusOf(code) !== 501

function reasonRegex (expr: string): Set<string> {
  const m = /enqueuer_requests_failed_total\{[^}]*reason=~"([^"]+)"/.exec(expr)
  assert.ok(m !== null, `no reason=~"..." matcher on enqueuer_requests_failed_total in: ${expr}`)
  return new Set(m[1]!.split('|'))
}

// ------------------------------------------------------------------ relayq's metrics, from the source

interface MetricInfo { name: string, type: string, labelNames: string[] }

function relayqMetrics (): Map<string, MetricInfo> {
  const out = new Map<string, MetricInfo>()
  const enq = createRegistry('enqueuer')
  createEnqueuerMetrics(enq, 120, { inflight: () => 0, pendingReplies: () => 0, brokerUp: () => true, brokerBlocked: () => false })
  const deq = createRegistry('dequeuer')
  createDequeuerMetrics(deq, 'svc', 60, { inflight: () => 0, prefetch: () => 100, consuming: () => true, consumeUp: () => true, publishUp: () => true })
  createTracingMetrics(enq)
  for (const registry of [enq, deq]) {
    for (const m of registry.getMetricsAsArray() as unknown as Array<{ name: string, type?: string, labelNames?: string[] }>) {
      if (/^(nodejs_|process_)/.test(m.name)) continue
      out.set(m.name, { name: m.name, type: String(m.type), labelNames: [...(m.labelNames ?? [])].sort() })
    }
  }
  return out
}

/**
 * A suite's setup whose failure fails each of its tests: node 20 reports a
 * failed before hook only as cancelled tests, with "fail 0" in the summary.
 */
function setup (fn: () => Promise<void> | void): () => void {
  let error: unknown = null
  before(async () => {
    try {
      await fn()
    } catch (err) {
      error = err
    }
  })
  return () => { if (error !== null) throw error }
}

// ==================================================================== tests

describe('alert rules (promtool)', () => {
  let promtool = ''
  let scratch: string | undefined
  const ready = setup(() => {
    scratch = mkdtempSync(join(tmpdir(), 'relayq-rules-'))
    promtool = tool('promtool', PROMETHEUS_HINT)
  })
  after(() => { if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true }) })

  it('pass promtool check rules', async () => {
    ready()
    const r = await run(promtool, ['check', 'rules', RULES])
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, new RegExp(`SUCCESS: ${alerts.length} rules found`))
  })

  it('pass their promtool unit tests', async () => {
    ready()
    const r = await run(promtool, ['test', 'rules', RULE_TESTS])
    assert.equal(r.code, 0, r.out)
  })

  it('are loaded by prometheus.yml, which passes promtool check config', async () => {
    ready()
    assert.deepEqual(yamlFile<{ rule_files: string[] }>(SCRAPE_CONFIG).rule_files, ['relayq.rules.yml'])
    const r = await run(promtool, ['check', 'config', SCRAPE_CONFIG])
    assert.equal(r.code, 0, r.out)
  })

  /** Runs promtool test rules on some of the unit tests against the given groups. */
  async function unitRun (name: string, ruleGroups: RuleGroup[], tests: UnitTest[]): Promise<Run> {
    const dir = mkdtempSync(join(scratch!, `${name}-`))
    writeFileSync(join(dir, 'rules.yml'), YAML.stringify({ groups: ruleGroups }))
    writeFileSync(join(dir, 'tests.yml'), YAML.stringify({ ...unitTests, rule_files: ['rules.yml'], tests }))
    return run(promtool, ['test', 'rules', join(dir, 'tests.yml')])
  }

  function withExpr (alert: string, expr: string): RuleGroup[] {
    return groups.map((g) => ({ ...g, rules: g.rules.map((r) => (r.alert === alert ? { ...r, expr } : r)) }))
  }

  /** The unit tests about one alert: those expecting it to fire, or those where it never does. */
  function casesOf (alert: string, firing: boolean): UnitTest[] {
    const out: UnitTest[] = []
    for (const t of unitTests.tests) {
      const mine = (t.alert_rule_test ?? []).filter((c) => c.alertname === alert)
      const fires = mine.filter((c) => (c.exp_alerts ?? []).length > 0)
      if (firing && fires.length > 0) out.push({ ...t, alert_rule_test: fires, promql_expr_test: [] })
      if (!firing && mine.length > 0 && fires.length === 0) out.push({ ...t, alert_rule_test: mine, promql_expr_test: [] })
    }
    return out
  }

  // A unit test proves something only if breaking the alert breaks the test:
  // the firing tests must fail when the alert can never fire, and the quiet
  // ones when it always does (past its `for`).
  for (const rule of alerts) {
    it(`${rule.alert}: a test shows it firing and one shows it quiet, and each fails when the alert is broken`, async () => {
      ready()
      const firing = casesOf(rule.alert, true)
      const quiet = casesOf(rule.alert, false)
      assert.ok(firing.length > 0, `no unit test expects ${rule.alert} to fire`)
      assert.ok(quiet.length > 0, `no unit test keeps ${rule.alert} quiet on a healthy series`)
      const [fireOk, quietOk, never, always] = await Promise.all([
        unitRun('fire', groups, firing),
        unitRun('quiet', groups, quiet),
        unitRun('never', withExpr(rule.alert, 'vector(0) > 1'), firing),
        unitRun('always', withExpr(rule.alert, 'vector(1)'), quiet),
      ])
      assert.equal(fireOk.code, 0, fireOk.out)
      assert.equal(quietOk.code, 0, quietOk.out)
      assert.notEqual(never.code, 0, `the firing tests of ${rule.alert} still pass when it can never fire`)
      assert.notEqual(always.code, 0, `the quiet tests of ${rule.alert} still pass when it always fires: evaluate them after its for (${rule.for ?? '0m'})`)
    })
  }

  it('label and annotate every alert, with a runbook section for each', () => {
    const runbook = readFileSync(RUNBOOK, 'utf8')
    const operations = readFileSync(OPERATIONS, 'utf8')
    const names = alerts.map((a) => a.alert)
    assert.equal(new Set(names).size, names.length, 'alert names are unique')
    for (const a of alerts) {
      assert.match(a.alert, /^Relayq[A-Z]\w+$/)
      assert.ok(['critical', 'warning', 'info'].includes(a.labels?.severity ?? ''), `${a.alert}: severity`)
      assert.equal(a.labels?.rulesgroup, 'relayq', `${a.alert}: rulesgroup`)
      assert.ok((a.annotations?.summary ?? '').length > 0, `${a.alert}: summary`)
      assert.ok((a.annotations?.description ?? '').length > 0, `${a.alert}: description`)
      assert.equal(a.annotations?.runbook_url, `${RUNBOOK_BASE}#${a.alert.toLowerCase()}`, `${a.alert}: runbook_url`)
      assert.match(runbook, new RegExp(`^### ${a.alert}$`, 'm'), `${a.alert}: no runbook section in deploy/prometheus/README.md`)
      assert.match(operations, new RegExp(`^\\| \\[${a.alert}\\]\\(\\.\\./deploy/prometheus/README\\.md#${a.alert.toLowerCase()}\\) \\| ${a.labels?.severity} \\|`, 'm'), `${a.alert}: not in docs/operations.md's alerts table with its severity`)
    }
    const sections = [...runbook.matchAll(/^### (\w+)$/gm)].map((m) => m[1])
    assert.deepEqual(sections.sort(), [...names].sort(), 'one runbook section per alert, no more')
  })

  it('count as relayq-made 5xx every 5xx code the enqueuer answers itself, and nothing else', () => {
    const rule = alerts.find((a) => a.alert === 'RelayqEnqueuerHighErrorRatio')
    assert.ok(rule !== undefined)
    const counted = reasonRegex(rule.expr)
    for (const reason of enqueuerMade5xx()) assert.ok(counted.has(reason), `${reason} is a 5xx the enqueuer makes but the error ratio ignores it`)
    const all5xx = new Set(ERROR_CODES.filter(is5xxFailure).map(reasonOf))
    for (const reason of counted) assert.ok(all5xx.has(reason), `${reason} is not a relayq 5xx error code`)
    // The dashboard's stat shows the same ratio.
    const stat = dashboardExprs.find((e) => e.includes('enqueuer_requests_failed_total') && e.includes('reason=~'))
    assert.ok(stat !== undefined)
    assert.deepEqual(reasonRegex(stat), counted)
  })

  it('keep retry and dead-letter queues out of the request-queue alerts', () => {
    for (const a of alerts.filter((r) => r.expr.includes('rabbitmq_detailed_queue_'))) {
      for (const m of a.expr.matchAll(/queue=~"([^"]+)"/g)) {
        // PromQL anchors regex matchers at both ends, as this does.
        const re = new RegExp(`^(?:${m[1]})$`)
        const target = a.alert.includes('DeadLetter') ? 'orders_requests.dlq' : 'orders_requests'
        assert.ok(re.test(target), `${a.alert}: ${m[1]} does not match ${target}`)
        for (const other of ['orders_requests.retry.1000', 'orders_requests.dlq', 'orders_requests', 'relayq_results']) {
          if (other !== target) assert.ok(!re.test(other), `${a.alert}: ${m[1]} matches ${other}`)
        }
      }
    }
  })
})

describe('PrometheusRule, PodMonitors and the kustomize bundle', () => {
  it('the PrometheusRule carries exactly the groups of relayq.rules.yml', () => {
    const doc = yamlFile<K8sDoc>(PROMETHEUS_RULE)
    assert.equal(doc.apiVersion, 'monitoring.coreos.com/v1')
    assert.equal(doc.kind, 'PrometheusRule')
    assert.deepEqual(doc.spec?.groups, groups)
  })

  it('deploy/k8s/monitoring holds identical copies of the PrometheusRule and the dashboard', () => {
    assert.equal(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8'), readFileSync(PROMETHEUS_RULE, 'utf8'),
      'copy deploy/prometheus/prometheusrule.yaml to deploy/k8s/monitoring/')
    assert.equal(readFileSync(join(MONITORING, 'relayq.json'), 'utf8'), dashboardText,
      'copy deploy/grafana/relayq.json to deploy/k8s/monitoring/')
  })

  it('kustomize renders the rule, the PodMonitors and the dashboard ConfigMap for Grafana\'s sidecar', async () => {
    const kubectl = tool('kubectl', 'kubectl (with its built-in kustomize) is needed to render deploy/k8s')
    const r = await run(kubectl, ['kustomize', MONITORING])
    assert.equal(r.code, 0, r.out)
    const docs = yamlDocs(r.out)
    const byKind = (kind: string): K8sDoc[] => docs.filter((d) => d.kind === kind)
    assert.deepEqual(byKind('PrometheusRule').map((d) => d.spec?.groups), [groups])
    const cms = byKind('ConfigMap')
    assert.equal(cms.length, 1)
    assert.equal(cms[0]!.metadata.labels?.grafana_dashboard, '1')
    assert.equal(cms[0]!.data?.['relayq.json'], dashboardText)
    assert.deepEqual(byKind('PodMonitor').map((d) => d.metadata.name).sort(), ['rabbitmq-queues', 'relayq-dequeuer', 'relayq-enqueuer'])
  })

  const podMonitors = yamlDocs(readFileSync(join(MONITORING, 'podmonitor.yaml'), 'utf8'))

  it('the relayq PodMonitors select pods that deploy/k8s makes, on a port those pods name', () => {
    // Every pod template (or pod template patch) anywhere in deploy/k8s outside monitoring/.
    const templates: Array<{ labels: Record<string, string>, ports: string[] }> = []
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir)) {
        const p = join(dir, e)
        if (statSync(p).isDirectory()) { if (p !== MONITORING) walk(p) } else if (/\.ya?ml$/.test(p)) {
          for (const doc of yamlDocs(readFileSync(p, 'utf8'))) {
            const tpl = doc.spec?.template
            if (tpl?.metadata?.labels === undefined) continue
            const containers = [...(tpl.spec?.containers ?? []), ...(tpl.spec?.initContainers ?? [])]
            templates.push({ labels: tpl.metadata.labels, ports: containers.flatMap((c) => (c.ports ?? []).map((pt) => pt.name ?? '')) })
          }
        }
      }
    }
    walk(K8S_DIR)
    for (const pm of podMonitors.filter((d) => d.metadata.name.startsWith('relayq-'))) {
      const want = pm.spec?.selector?.matchLabels ?? {}
      const port = pm.spec?.podMetricsEndpoints?.[0]?.port ?? ''
      const hit = templates.find((t) => Object.entries(want).every(([k, v]) => t.labels[k] === v) && t.ports.includes(port))
      assert.ok(hit !== undefined, `PodMonitor ${pm.metadata.name}: no pod template in deploy/k8s has labels ${JSON.stringify(want)} and a port named ${port}`)
      assert.equal(pm.spec?.namespaceSelector?.any, true, `${pm.metadata.name}: relayq runs in the services' namespaces`)
    }
  })

  it('prometheus-kubernetes.yml selects what the PodMonitors select', () => {
    // Debian's promtool is built without Kubernetes discovery, so the file is checked against the PodMonitors instead.
    const jobs = yamlFile<ScrapeConfig>(SCRAPE_CONFIG_K8S).scrape_configs
    const jobOf: Record<string, string> = { 'relayq-enqueuer': 'relayq-enqueuer', 'relayq-dequeuer': 'relayq-dequeuer', 'rabbitmq-queues': 'rabbitmq-detailed' }
    assert.deepEqual(podMonitors.map((d) => d.metadata.name).sort(), Object.keys(jobOf).sort())
    const sanitize = (label: string): string => label.replace(/[^A-Za-z0-9_]/g, '_')
    for (const pm of podMonitors) {
      const job = jobs.find((j) => j.job_name === jobOf[pm.metadata.name])
      assert.ok(job !== undefined, `no job ${jobOf[pm.metadata.name]}`)
      const keeps = (job.relabel_configs ?? []).filter((r) => r.action === 'keep')
      const keeps1 = (source: string, regex: string): boolean => keeps.some((k) => k.source_labels?.length === 1 && k.source_labels[0] === source && k.regex === regex)
      for (const [k, v] of Object.entries(pm.spec?.selector?.matchLabels ?? {})) {
        assert.ok(keeps1(`__meta_kubernetes_pod_label_${sanitize(k)}`, v), `${job.job_name}: keeps pods with ${k}=${v}`)
      }
      const ep = pm.spec?.podMetricsEndpoints?.[0]
      assert.ok(ep !== undefined, `${pm.metadata.name}: no endpoint`)
      assert.ok(keeps1('__meta_kubernetes_pod_container_port_name', ep.port), `${job.job_name}: keeps port ${ep.port}`)
      assert.equal(job.metrics_path ?? '/metrics', ep.path)
      assert.deepEqual(job.params ?? {}, ep.params ?? {})
    }
    // And the static file scrapes RabbitMQ's per-queue families the same way.
    const detailed = yamlFile<ScrapeConfig>(SCRAPE_CONFIG).scrape_configs.find((j) => j.job_name === 'rabbitmq-detailed')
    const k8sDetailed = jobs.find((j) => j.job_name === 'rabbitmq-detailed')
    assert.deepEqual([detailed?.metrics_path, detailed?.params], [k8sDetailed?.metrics_path, k8sDetailed?.params])
  })
})

describe('Grafana dashboard', () => {
  const panels = dashboard.panels.filter((p) => p.type !== 'row')
  const services = relayqMetrics()

  it('takes its data source and services from variables', () => {
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource')
    assert.equal(ds?.query, 'prometheus')
    const svc = dashboard.templating.list.find((v) => v.name === 'service')
    assert.equal(svc?.type, 'query')
    assert.equal(svc?.includeAll, true)
    for (const p of panels) {
      assert.equal(p.datasource?.uid, `\${${ds.name}}`, `${p.title}: data source`)
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, `\${${ds.name}}`, `${p.title}: target data source`)
    }
  })

  it('filters every per-service series by the service variable', () => {
    for (const expr of dashboardExprs) {
      const perService = metricNames(expr).some((n) => {
        const base = n.replace(/_(bucket|sum|count)$/, '')
        return (services.get(n) ?? services.get(base))?.labelNames.includes('service') === true || n.startsWith('rabbitmq_detailed_queue_')
      })
      if (perService) assert.ok(expr.includes('$service'), `not filtered by $service: ${expr}`)
    }
  })

  it('shows rates, status codes, p50 and p99 of every hop, backlog, dead letters, breakers and reconnects', () => {
    const all = dashboardExprs.join('\n')
    for (const hop of ['enqueuer_request_latency_seconds', 'enqueuer_publish_latency_seconds', 'dequeuer_queue_latency_seconds', 'dequeuer_downstream_latency_seconds', 'dequeuer_processing_latency_seconds']) {
      for (const q of ['0.5', '0.99']) {
        assert.ok(dashboardExprs.some((e) => e.includes(`histogram_quantile(${q},`) && e.includes(`${hop}_bucket`)), `p${Number(q) * 100} of ${hop}`)
      }
    }
    for (const name of ['enqueuer_requests_total', 'enqueuer_response_codes_total', 'rabbitmq_detailed_queue_messages_ready', 'rabbitmq_detailed_queue_messages{', 'enqueuer_circuit_breaker_state', 'dequeuer_circuit_breaker_state', 'relayq_broker_reconnects_total']) {
      assert.ok(all.includes(name), name)
    }
    assert.match(all, /_requests\[\.\]dlq/)
  })

  it('lays panels out without overlaps, with unique ids', () => {
    const ids = dashboard.panels.map((p) => p.id)
    assert.equal(new Set(ids).size, ids.length)
    const taken = new Set<string>()
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `${p.title}: within 24 columns`)
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          assert.ok(!taken.has(`${i},${j}`), `${p.title} overlaps another panel at ${i},${j}`)
          taken.add(`${i},${j}`)
        }
      }
    }
  })
})

describe('metrics documentation', () => {
  it('docs/operations.md\'s metrics table lists every metric relayq exposes, with its type and labels', () => {
    const full = readFileSync(OPERATIONS, 'utf8')
    const readme = full.slice(full.indexOf('<!-- metrics-table:start -->'), full.indexOf('<!-- metrics-table:end -->'))
    assert.ok(readme.length > 100, 'metrics-table markers in docs/operations.md')
    const rows = new Map<string, { type: string, labels: string[] }>()
    for (const m of readme.matchAll(/^\| `([a-z_:]+)` \| (\w+) \|([^|]*)\|/gm)) {
      rows.set(m[1]!, { type: m[2]!, labels: [...m[3]!.matchAll(/`(\w+)`/g)].map((l) => l[1]!).sort() })
    }
    const metrics = relayqMetrics()
    assert.deepEqual([...rows.keys()].sort(), [...metrics.keys()].sort(), 'metric names in the table')
    for (const [name, info] of metrics) {
      assert.equal(rows.get(name)?.type, info.type, `${name}: type`)
      assert.deepEqual(rows.get(name)?.labels, info.labelNames, `${name}: labels`)
    }
    assert.match(readme, /^\| `process_\*`, `nodejs_\*` \|/m, 'a row for the default process metrics')
  })
})

describe('Prometheus scraping a running enqueuer, dequeuer and RabbitMQ', () => {
  const service = uniqueService('obs')
  const rabbitPrometheus = `http://${new URL(AMQP_URL).hostname}:15692`
  let broker: TestBroker | undefined
  let echo: Echo | undefined
  let enq: TestEnqueuer | undefined
  let deq: TestDequeuer | undefined
  let deqClosed = false
  let prom: ChildProcess | undefined
  let promExited: Promise<void> | undefined
  /** Why Prometheus is no longer running, once it is not. */
  let promStopped: string | null = null
  let promLog = ''
  let promUrl = ''
  let scratch: string | undefined
  const exposed = new Map<string, string>()
  const sent = 5

  const rabbitUp = async (): Promise<boolean> => {
    try {
      return (await send(`${rabbitPrometheus}/metrics`)).status === 200
    } catch {
      return false
    }
  }

  const ready = setup(async () => {
    const prometheus = tool('prometheus', PROMETHEUS_HINT)
    if (!(await rabbitUp())) {
      // The shared broker may run without the plugin; enabling one is all this does to it.
      const r = await run('rabbitmq-plugins', ['enable', 'rabbitmq_prometheus'])
      assert.equal(r.code, 0, `rabbitmq_prometheus is not answering on ${rabbitPrometheus} and could not be enabled: ${r.out}`)
      await waitFor(rabbitUp, { timeoutMs: 30000, intervalMs: 250, what: `${rabbitPrometheus}/metrics` })
    }

    broker = await connectBroker()
    echo = await startEcho()
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    enq = await startTestEnqueuer()
    for (let i = 0; i < sent; i++) assert.equal((await send(`${enq.url}/${service}/item/${i}`)).status, 200)

    for (const url of [`${enq.url}/metrics`, `${deq.adminUrl}/metrics`, `${rabbitPrometheus}/metrics`,
      `${rabbitPrometheus}/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count`]) {
      const res = await send(url)
      assert.equal(res.status, 200, url)
      for (const [k, v] of exposedTypes(res.body.toString())) exposed.set(k, v)
    }

    // The shipped scrape configuration, pointed at this test's processes and sped up.
    scratch = mkdtempSync(join(tmpdir(), 'relayq-prometheus-'))
    const config = yamlFile<ScrapeConfig>(SCRAPE_CONFIG)
    const targets: Record<string, string> = {
      'relayq-enqueuer': `127.0.0.1:${enq.port}`,
      'relayq-dequeuer': `127.0.0.1:${deq.adminPort}`,
      rabbitmq: new URL(rabbitPrometheus).host,
      'rabbitmq-detailed': new URL(rabbitPrometheus).host,
    }
    assert.deepEqual(config.scrape_configs.map((j) => j.job_name).sort(), Object.keys(targets).sort())
    for (const job of config.scrape_configs) job.static_configs = [{ targets: [targets[job.job_name]!] }]
    config.global = { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '1s' }
    config.rule_files = [RULES]
    writeFileSync(join(scratch, 'prometheus.yml'), YAML.stringify(config))

    const port = await freePort()
    promUrl = `http://127.0.0.1:${port}`
    const child = spawn(prometheus, [
      `--config.file=${join(scratch, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(scratch, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    prom = child
    const forget = reapOnExit(() => child.kill('SIGKILL'))
    child.once('exit', forget)
    child.stdout.on('data', (c: Buffer) => { promLog += c.toString() })
    child.stderr.on('data', (c: Buffer) => { promLog += c.toString() })
    promExited = new Promise((resolveExit) => {
      child.on('exit', (code, signal) => { promStopped = `exited (${code ?? signal})`; resolveExit() })
      // A binary that cannot be run emits error and never exit.
      child.on('error', (err) => { promStopped = err.message; resolveExit() })
    })
    const state = await waitFor(async () => {
      if (promStopped !== null) return 'stopped'
      try {
        return (await send(`${promUrl}/-/ready`)).status === 200 ? 'ready' : null
      } catch {
        return null
      }
    }, { timeoutMs: 20000, intervalMs: 100, what: 'prometheus /-/ready' })
    if (state === 'stopped') throw new Error(`prometheus ${promStopped}: ${promLog}`)
  })

  after(async () => {
    // Every step runs whatever failed before it; the first error is reported at the end.
    const errors: unknown[] = []
    const step = async (fn: () => unknown): Promise<void> => {
      try {
        await fn()
      } catch (err) {
        errors.push(err)
      }
    }
    await step(async () => {
      if (prom === undefined || promExited === undefined) return
      for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        if (promStopped !== null) return
        prom.kill(signal)
        await Promise.race([promExited, sleep(5000)])
      }
      if (promStopped === null) throw new Error(`prometheus (pid ${prom.pid}) did not stop`)
    })
    await step(() => enq?.close())
    await step(() => (deqClosed ? undefined : deq?.close()))
    await step(() => echo?.close())
    await step(() => broker?.deleteService(service))
    await step(() => broker?.close())
    await step(() => { if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true }) })
    if (errors.length > 0) throw errors[0]
  })

  type Sample = { metric: Record<string, string>, value: [number, string] }

  async function query (q: string): Promise<Sample[]> {
    const res = await send(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)
    const body = res.json<{ status: string, error?: string, data: { result: Sample[] } }>()
    if (body.status !== 'success') throw new Error(`${q}: ${body.error}`)
    return body.data.result
  }

  /** Waits until the query returns a series, and returns them. */
  const series = (q: string, timeoutMs = 20000): Promise<Sample[]> =>
    waitFor(async () => { const r = await query(q); return r.length > 0 ? r : null }, { timeoutMs, intervalMs: 250, what: `${q} in Prometheus` })

  async function relayqAlerts (): Promise<Array<{ labels: Record<string, string>, state: string }>> {
    const body = (await send(`${promUrl}/api/v1/alerts`)).json<{ data: { alerts: Array<{ labels: Record<string, string>, state: string }> } }>()
    return body.data.alerts.filter((a) => a.labels.rulesgroup === 'relayq')
  }

  it('every metric the rules and the dashboard use is one relayq or RabbitMQ exposes', () => {
    ready()
    const used = new Map<string, string>()
    for (const a of alerts) for (const n of metricNames(a.expr)) used.set(n, `alert ${a.alert}`)
    for (const e of dashboardExprs) for (const n of metricNames(e)) used.set(n, `dashboard: ${e}`)
    for (const n of variableMetrics) used.set(n, 'dashboard variable')
    assert.ok(used.size > 20, `only ${used.size} names found: the extraction is broken`)
    // `up` is Prometheus's own series for every target.
    const missing = [...used].filter(([n]) => n !== 'up' && !isExposed(n, exposed)).map(([n, where]) => `${n} (${where})`)
    assert.deepEqual(missing, [])
  })

  it('receives relayq\'s series with their labels', async () => {
    ready()
    const requests = await series(`enqueuer_requests_total{job="relayq-enqueuer",service="${service}",method="GET"}`)
    assert.equal(Number(requests[0]!.value[1]), sent)
    await series(`enqueuer_response_codes_total{job="relayq-enqueuer",service="${service}",status_code="200"} == ${sent}`)
    await series(`enqueuer_request_latency_seconds_count{service="${service}"} == ${sent}`)
    await series(`enqueuer_publish_latency_seconds_bucket{service="${service}",le="+Inf"} == ${sent}`)
    await series(`dequeuer_processed_total{job="relayq-dequeuer",service="${service}",status_code="200"} == ${sent}`)
    await series(`dequeuer_processing_latency_seconds_count{service="${service}"} == ${sent}`)
    await series(`dequeuer_downstream_latency_seconds_count{service="${service}"} == ${sent}`)
    await series(`dequeuer_circuit_breaker_state{job="relayq-dequeuer",service="${service}"} == 0`)
    await series(`dequeuer_consuming{service="${service}"} == 1`)
    await series('relayq_broker_connected{job="relayq-enqueuer",connection="enqueuer"} == 1')
    await series('relayq_broker_connected{job="relayq-dequeuer",connection="consume"} == 1')
    await series('relayq_build_info{job="relayq-dequeuer",mode="dequeuer"}')
    const up = await series('up{job=~".*relayq.*"} == 1')
    assert.deepEqual(up.map((s) => s.metric.job).sort(), ['relayq-dequeuer', 'relayq-enqueuer'])
  })

  it('receives RabbitMQ\'s per-queue series for the service\'s queues', async () => {
    ready()
    await series(`rabbitmq_detailed_queue_messages{job="rabbitmq-detailed",vhost="/",queue="${service}_requests"}`)
    await series(`rabbitmq_detailed_queue_messages_ready{queue="${service}_requests"}`)
    await series(`rabbitmq_detailed_queue_messages_unacked{queue="${service}_requests"}`)
    await series(`rabbitmq_detailed_queue_consumers{queue="${service}_requests"} >= 1`)
    await series(`rabbitmq_detailed_queue_messages{queue="${service}_requests.dlq"} == 0`)
    await series('rabbitmq_identity_info{job="rabbitmq"}')
  })

  it('answers every dashboard query, with the variables filled in as Grafana would', async () => {
    ready()
    const fill = (e: string): string => e.replaceAll('$__rate_interval', '1m').replaceAll('$service', service)
    const failed: string[] = []
    for (const e of dashboardExprs) await query(fill(e)).catch((err: Error) => failed.push(err.message))
    assert.deepEqual(failed, [])
    const rate = dashboardExprs.find((e) => e.startsWith('sum by (service) (rate(enqueuer_requests_total'))
    assert.ok(rate !== undefined)
    const rows = await series(fill(rate))
    assert.deepEqual(rows.map((r) => r.metric.service), [service])
  })

  it('evaluates every relayq rule without error, and none about a healthy service is active', async () => {
    ready()
    type RuleState = { name: string, health: string, lastError?: string }
    const rules = await waitFor(async () => {
      const body = (await send(`${promUrl}/api/v1/rules?type=alert`)).json<{ data: { groups: Array<{ rules: RuleState[] }> } }>()
      const all = body.data.groups.flatMap((g) => g.rules)
      return all.length > 0 && all.every((r) => r.health !== 'unknown') ? all : null
    }, { timeoutMs: 20000, intervalMs: 250, what: 'every rule evaluated once' })
    assert.deepEqual(rules.map((r) => r.name).sort(), alerts.map((a) => a.alert).sort())
    // Real data can break what synthetic series do not, e.g. label_replace making two series alike.
    assert.deepEqual(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`), [])
    const mine = (await relayqAlerts()).filter((a) => a.labels.service === service)
    assert.deepEqual(mine, [])
  })

  it('puts the service\'s no-consumer and error-ratio alerts in pending once its dequeuer is gone', async () => {
    ready()
    assert.ok(deq !== undefined && enq !== undefined && broker !== undefined)
    deqClosed = true
    await deq.close()
    // A request waiting in the queue, as if published before the consumer left.
    await broker.publish(`${service}_requests`, Buffer.from('{}'), { expiration: '60000' })
    // Not the breaker: a missing consumer is answered RQ_ERR_NO_CONSUMERS and never opens it.
    const expected = ['RelayqEnqueuerHighErrorRatio', 'RelayqEnqueuerNoConsumers', 'RelayqRequestQueueNoConsumers']
    const statuses = new Set<number>()
    // Others may join them (reply timeouts, dead letters as requests expire); these three must be there.
    const pending = await waitFor(async () => {
      // Keep clients coming, as they would: the enqueuer refuses them (503), and its counters move between scrapes.
      statuses.add((await send(`${enq!.url}/${service}/item`, { headers: { 'x-relayq-timeout-ms': '1000' } })).status)
      const active = (await relayqAlerts()).filter((a) => a.labels.service === service).map((a) => a.labels.alertname!)
      return expected.every((n) => active.includes(n)) ? active : null
    }, { timeoutMs: 30000, intervalMs: 200, what: `pending alerts ${expected.join(', ')} for ${service}` })
    assert.ok(statuses.has(503), `statuses seen: ${[...statuses].join(', ')}`)
    assert.ok(pending.length >= expected.length)
  })
})
