// The deploy files, checked as far as a machine without a cluster or a Docker
// engine allows: every Kustomize folder is rendered by the real kubectl and the
// objects are read back; deploy/compose.yaml goes through a real compose
// client's `config`; the Dockerfile, the broker definitions and the release
// workflow are parsed. Env names and values are checked against relayq's own
// config loader, queue names against its topology module.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { parse, parseAllDocuments } from 'yaml'
import { DEAD_LETTER_EXCHANGE, deadLetterQueue, policyCommand, requestQueue, retryQueue } from '../../src/amqp/topology'
import { loadConfig } from '../../src/config/load'
import { SPEC } from '../../src/config/spec'
import type { Config } from '../../src/config/types'
import { retryDelays } from '../../src/dequeuer/outcome'
import { ERROR_CODES } from '../../src/errors'

type Dict = Record<string, unknown>
interface HttpAction { path: string, port: number | string }
interface Probe { httpGet?: HttpAction }
interface EnvVar { name: string, value?: string, valueFrom?: { fieldRef?: { fieldPath: string } } }
interface SecurityContext {
  runAsNonRoot?: boolean, runAsUser?: number, privileged?: boolean, allowPrivilegeEscalation?: boolean,
  readOnlyRootFilesystem?: boolean, capabilities?: { drop?: string[], add?: string[] }, seccompProfile?: { type: string }
}
interface Container {
  name: string, image: string, env?: EnvVar[], restartPolicy?: string, ports?: Array<{ name?: string, containerPort: number }>,
  startupProbe?: Probe, readinessProbe?: Probe, livenessProbe?: Probe, securityContext?: SecurityContext,
  lifecycle?: { preStop?: { httpGet?: HttpAction, exec?: { command: string[] }, sleep?: { seconds: number } } },
  resources?: { requests?: Record<string, string>, limits?: Record<string, string> }
}
interface PodSpec {
  containers: Container[], initContainers?: Container[], securityContext?: SecurityContext, terminationGracePeriodSeconds?: number,
  hostNetwork?: boolean, hostPID?: boolean, hostIPC?: boolean, volumes?: Array<Record<string, unknown> & { name: string }>
}
interface PodTemplate { metadata: { labels?: Record<string, string>, annotations?: Record<string, string> }, spec: PodSpec }
interface K8sObject { kind: string, metadata: { name: string, labels?: Record<string, string> }, spec: Dict }
interface Deployment extends K8sObject { spec: { replicas?: number, template: PodTemplate } }

const K8S = ['deploy/k8s/enqueuer', 'deploy/k8s/dequeuer-native', 'deploy/k8s/dequeuer-legacy', 'deploy/k8s/dequeuer-injected', 'deploy/keda', 'deploy/keda-scale-to-zero']
const DUMMY_URL = 'amqp://user:password@rabbitmq:5672/%2F'
const rendered = new Map<string, K8sObject[]>()

function render (dir: string): K8sObject[] {
  const cached = rendered.get(dir)
  if (cached !== undefined) return cached
  let out: string
  try {
    out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') assert.fail('kubectl is not installed; run scripts/ensure-deploy-tools.sh')
    assert.fail(`kubectl kustomize ${dir} failed:\n${e.stderr ?? e.message}`)
  }
  const objects = parseAllDocuments(out).map((d) => d.toJS() as K8sObject).filter((o) => o !== null)
  rendered.set(dir, objects)
  return objects
}

function files (dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e)
    return statSync(p).isDirectory() ? files(p) : [p]
  })
}

function one<T extends K8sObject> (objects: K8sObject[], kind: string, name?: string): T {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
  assert.equal(found.length, 1, `one ${kind}${name === undefined ? '' : ` ${name}`}`)
  return found[0] as T
}

const isRelayq = (c: Container): boolean => /(^|\/)relayq[:@]/.test(c.image)
const allContainers = (pod: PodSpec): Container[] => [...(pod.initContainers ?? []), ...pod.containers]
const relayqOf = (pod: PodSpec): Container => {
  const found = allContainers(pod).filter(isRelayq)
  assert.equal(found.length, 1, 'one relayq container in the pod')
  return found[0] as Container
}

/** The container's env as the process would see it; downward-API annotations resolved from the pod. */
function envOf (c: Container, pod?: PodTemplate): Record<string, string> {
  const env: Record<string, string> = {}
  for (const e of c.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath
    const annotation = path === undefined ? undefined : /^metadata\.annotations\['(.+)'\]$/.exec(path)?.[1]
    if (path !== undefined) assert.ok(annotation !== undefined, `${e.name}: only pod annotations are read through the downward API`)
    env[e.name] = annotation !== undefined ? pod?.metadata.annotations?.[annotation] ?? '' : e.value ?? ''
  }
  return env
}

/** Loads the env with relayq's own loader: every name known, every value valid. Secret files read as a broker URL. */
function configOf (env: Record<string, string>): Config {
  return loadConfig(env, () => DUMMY_URL)
}

function portOf (c: Container, port: number | string): number {
  if (typeof port === 'number') return port
  const found = c.ports?.find((p) => p.name === port)
  assert.ok(found !== undefined, `${c.name} declares port ${port}`)
  return found.containerPort
}

function assertProbe (c: Container, probe: 'startupProbe' | 'readinessProbe' | 'livenessProbe', path: string, port: number): void {
  const get = c[probe]?.httpGet
  assert.ok(get !== undefined, `${c.name} has an HTTP ${probe}`)
  assert.equal(get.path, path, probe)
  assert.equal(portOf(c, get.port), port, `${probe} on the admin port`)
}

const shutdownSeconds = (cfg: Config): number => cfg.shutdownTimeoutMs / 1000

/** The dequeuer pod contract shared by the native, legacy and injected shapes. */
function assertDequeuerPod (d: Deployment, native: boolean): Config {
  const pod = d.spec.template.spec
  const sidecar = relayqOf(pod)
  const cfg = configOf(envOf(sidecar, d.spec.template))
  assert.equal(cfg.mode, 'dequeuer')
  const admin = cfg.dequeuer?.admin.port ?? 0
  if (native) {
    assert.ok(pod.initContainers?.includes(sidecar), 'the sidecar is an init container')
    assert.equal(sidecar.restartPolicy, 'Always', 'native sidecar')
  } else {
    assert.equal(pod.initContainers, undefined, 'no init containers on the legacy shape')
    assert.ok(pod.containers.includes(sidecar))
    assert.equal(sidecar.restartPolicy, undefined)
  }
  assertProbe(sidecar, 'startupProbe', '/startupz', admin)
  assertProbe(sidecar, 'readinessProbe', '/readyz', admin)
  assertProbe(sidecar, 'livenessProbe', '/livez', admin)
  const app = pod.containers[0] as Container
  assert.notEqual(app, sidecar, 'the app is the first container')
  const downstream = cfg.dequeuer?.downstreamUrl
  assert.ok(downstream !== undefined && ['127.0.0.1', 'localhost'].includes(downstream.hostname), 'the app is reached on localhost')
  assert.ok(app.ports?.some((p) => p.containerPort === Number(downstream.port)), 'DOWNSTREAM_URL names a port of the app')
  assertDrainHook(app, admin)
  assert.ok((pod.terminationGracePeriodSeconds ?? 30) >= shutdownSeconds(cfg) + 10, 'grace period covers the drain and the app stop')
  return cfg
}

/** /drain takes POST only (a GET is 405), so the hook must POST: an exec hook, since httpGet cannot. */
function assertDrainHook (app: Container, admin: number): void {
  const preStop = app.lifecycle?.preStop
  assert.equal(preStop?.httpGet, undefined, "the app's preStop does not GET /drain (405)")
  const command = preStop?.exec?.command.join(' ') ?? ''
  const url = `http://127.0.0.1:${admin}/drain`
  assert.ok(command.includes(`curl -fsS -X POST -m 40 ${url}`), `the app's preStop POSTs ${url} with curl: ${command}`)
  assert.ok(command.includes(`wget -q -O- --post-data= -T 40 ${url}`), `or with wget: ${command}`)
}

function deployment (dir: string, name: string): Deployment {
  return one<Deployment>(render(dir), 'Deployment', name)
}

function sansEnv (c: Container): Omit<Container, 'env'> {
  const { env: _env, ...rest } = c
  return rest
}

describe('Kustomize folders', () => {
  it('every kustomization under deploy/ renders with kubectl, and each expected one exists', () => {
    const dirs = files('deploy').filter((f) => f.endsWith('kustomization.yaml')).map((f) => relative('.', resolve(f, '..')))
    for (const dir of K8S) assert.ok(dirs.includes(dir), `${dir}/kustomization.yaml exists`)
    for (const dir of dirs) {
      if ((parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Dict).kind === 'Component') continue
      assert.ok(render(dir).length > 0, `${dir} renders objects`)
    }
  })

  it('nothing under deploy/ calls /drain with GET (it answers 405: POST only)', () => {
    for (const dir of K8S) {
      for (const o of render(dir)) {
        const template = (o as Deployment).spec.template as PodTemplate | undefined
        for (const c of template === undefined ? [] : allContainers(template.spec)) {
          assert.notEqual(c.lifecycle?.preStop?.httpGet?.path, '/drain', `${dir}: ${c.name}'s preStop GETs /drain`)
        }
      }
    }
    for (const f of files('deploy').filter((n) => /\.(ya?ml|md)$/.test(n))) {
      assert.doesNotMatch(readFileSync(f, 'utf8'), /GET[^\n]{0,40}\/drain|path: \/drain/, `${f} names GET /drain`)
    }
  })

  it('every manifest file is used by its folder\'s kustomization', () => {
    for (const dir of [...K8S, 'deploy/k8s/components/dequeuer-sidecar']) {
      const kustomization = readFileSync(join(dir, 'kustomization.yaml'), 'utf8')
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml')) {
        assert.ok(kustomization.includes(f), `${dir}/${f} is listed in its kustomization`)
      }
    }
  })
})

describe('enqueuer', () => {
  const objects = render('deploy/k8s/enqueuer')
  const d = one<Deployment>(objects, 'Deployment')
  const pod = d.spec.template
  const relayq = relayqOf(pod.spec)
  const cfg = configOf(envOf(relayq))

  it('is a Deployment, a Service and a PodDisruptionBudget', () => {
    assert.deepEqual(objects.map((o) => o.kind).sort(), ['Deployment', 'PodDisruptionBudget', 'Service'])
  })

  it('runs the enqueuer with valid settings and probes on its admin port', () => {
    assert.equal(cfg.mode, 'enqueuer')
    const admin = cfg.enqueuer?.admin?.port
    assert.ok(admin !== undefined && admin !== cfg.enqueuer?.port, 'admin endpoints on their own port')
    assertProbe(relayq, 'readinessProbe', '/readyz', admin)
    assertProbe(relayq, 'livenessProbe', '/livez', admin)
    assert.ok(relayq.ports?.some((p) => p.containerPort === cfg.enqueuer?.port), 'declares the HTTP port')
    assert.ok(cfg.enqueuer?.services !== null, 'ENQUEUER_SERVICES allow-list set')
  })

  it('has resource requests and a memory limit', () => {
    assert.ok(relayq.resources?.requests?.cpu !== undefined && relayq.resources.requests.memory !== undefined)
    assert.ok(relayq.resources?.limits?.memory !== undefined)
  })

  it('keeps serving while endpoints converge, and its grace period covers the drain', () => {
    const delay = (cfg.enqueuer?.drainDelayMs ?? 0) / 1000
    assert.ok(delay > 0, 'ENQUEUER_DRAIN_DELAY_SECONDS set')
    assert.ok((pod.spec.terminationGracePeriodSeconds ?? 30) > delay + shutdownSeconds(cfg))
  })

  it('Service and PodDisruptionBudget select its pods; the budget leaves one running', () => {
    const labels = pod.metadata.labels ?? {}
    const svc = one(objects, 'Service').spec as { selector: Record<string, string>, ports: Array<{ targetPort: string | number }> }
    const pdb = one(objects, 'PodDisruptionBudget').spec as { selector: { matchLabels: Record<string, string> }, maxUnavailable?: number, minAvailable?: number }
    for (const sel of [svc.selector, pdb.selector.matchLabels]) {
      assert.ok(Object.keys(sel).length > 0)
      for (const [k, v] of Object.entries(sel)) assert.equal(labels[k], v, `selector ${k}`)
    }
    for (const p of svc.ports) assert.equal(portOf(relayq, p.targetPort), cfg.enqueuer?.port, 'Service targets the HTTP port')
    const replicas = d.spec.replicas ?? 1
    assert.ok(replicas >= 2)
    assert.ok(pdb.maxUnavailable !== undefined ? pdb.maxUnavailable < replicas : (pdb.minAvailable ?? 0) >= 1)
  })
})

describe('dequeuer sidecar', () => {
  const native = deployment('deploy/k8s/dequeuer-native', 'orders')
  const legacy = deployment('deploy/k8s/dequeuer-legacy', 'orders')

  it('native: an init container with restartPolicy Always, probes on the admin port, the app drains it', () => {
    assertDequeuerPod(native, true)
  })

  it('legacy: the same sidecar as a plain second container', () => {
    assertDequeuerPod(legacy, false)
    const { restartPolicy: _r, ...nativeSidecar } = relayqOf(native.spec.template.spec)
    assert.deepEqual(relayqOf(legacy.spec.template.spec), nativeSidecar)
  })

  it('the component injects it into labelled Deployments, with SERVICE_NAME and DOWNSTREAM_URL from annotations', () => {
    const payments = deployment('deploy/k8s/dequeuer-injected', 'payments')
    assert.equal(payments.metadata.labels?.['relayq.dev/dequeuer'], 'enabled')
    const cfg = assertDequeuerPod(payments, true)
    assert.equal(cfg.dequeuer?.service, 'payments')
    const sidecar = relayqOf(payments.spec.template.spec)
    for (const name of ['SERVICE_NAME', 'DOWNSTREAM_URL']) {
      assert.ok(sidecar.env?.find((e) => e.name === name)?.valueFrom?.fieldRef !== undefined, `${name} from an annotation`)
    }
    assert.equal(envOf(sidecar, payments.spec.template).DEQUEUER_CONCURRENCY, '20', 'the overlay\'s per-app patch applies after the component')
    assert.deepEqual(sansEnv(sidecar), sansEnv(relayqOf(native.spec.template.spec)), 'injected and native sidecars are the same but for env')
  })

  it('the component leaves Deployments without the label as they were', () => {
    const source = parseAllDocuments(readFileSync('deploy/k8s/dequeuer-injected/apps.yaml', 'utf8')).map((d) => d.toJS() as K8sObject)
    const storefront = deployment('deploy/k8s/dequeuer-injected', 'storefront')
    assert.equal(storefront.metadata.labels?.['relayq.dev/dequeuer'], undefined)
    assert.deepEqual(storefront, one(source, 'Deployment', 'storefront'))
  })
})

describe('Pod Security "restricted"', () => {
  const ALLOWED_VOLUMES = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']
  const dockerUser = Number(/^USER\s+(\d+)/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1])

  it('every pod and container meets it; relayq runs read-only as the image\'s user', () => {
    let pods = 0
    for (const dir of K8S) {
      for (const d of render(dir).filter((o) => o.kind === 'Deployment') as Deployment[]) {
        pods++
        const pod = d.spec.template.spec
        const where = `${dir} ${d.metadata.name}`
        assert.ok(pod.hostNetwork !== true && pod.hostPID !== true && pod.hostIPC !== true, `${where}: no host namespaces`)
        for (const v of pod.volumes ?? []) {
          assert.ok(Object.keys(v).some((k) => ALLOWED_VOLUMES.includes(k)), `${where}: volume ${v.name} of an allowed type`)
        }
        for (const c of allContainers(pod)) {
          const sc = c.securityContext ?? {}
          const at = `${where} container ${c.name}`
          assert.equal(sc.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation false`)
          assert.ok(sc.capabilities?.drop?.includes('ALL'), `${at}: drops ALL capabilities`)
          assert.ok((sc.capabilities?.add ?? []).every((cap) => cap === 'NET_BIND_SERVICE'), `${at}: adds no capability`)
          assert.notEqual(sc.privileged, true, `${at}: not privileged`)
          assert.equal(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, true, `${at}: runAsNonRoot`)
          const user = sc.runAsUser ?? pod.securityContext?.runAsUser
          assert.notEqual(user, 0, `${at}: not uid 0`)
          assert.ok(['RuntimeDefault', 'Localhost'].includes(sc.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type ?? ''), `${at}: seccomp profile`)
          if (isRelayq(c)) {
            assert.equal(sc.readOnlyRootFilesystem, true, `${at}: read-only root filesystem`)
            assert.equal(user, dockerUser, `${at}: runs as the Dockerfile's USER`)
          }
        }
      }
    }
    assert.ok(pods >= 5, `checked ${pods} pods`)
  })
})

describe('KEDA', () => {
  const objects = render('deploy/keda')
  const so = one(objects, 'ScaledObject').spec as {
    scaleTargetRef: { name: string }, minReplicaCount?: number,
    triggers: Array<{ type: string, metadata: Record<string, string>, authenticationRef?: { name: string } }>
  }
  const auth = one(objects, 'TriggerAuthentication')

  it('scales the native example on its request queue, counting unacked messages (protocol http)', () => {
    const target = deployment('deploy/k8s/dequeuer-native', so.scaleTargetRef.name)
    const dequeuer = configOf(envOf(relayqOf(target.spec.template.spec))).dequeuer
    const service = dequeuer?.service ?? ''
    assert.equal(so.triggers.length, 1)
    const t = so.triggers[0] as (typeof so.triggers)[number]
    assert.equal(t.type, 'rabbitmq')
    assert.equal(t.metadata.protocol, 'http')
    assert.equal(t.metadata.mode, 'QueueLength')
    assert.equal(t.metadata.queueName, requestQueue(service))
    assert.ok(Number(t.metadata.value) > 0 && Number(t.metadata.value) <= (dequeuer?.concurrency ?? 0), 'target at most the prefetch')
    assert.equal(t.authenticationRef?.name, auth.metadata.name)
    assert.ok((auth.spec.secretTargetRef as Array<{ parameter: string }>).some((r) => r.parameter === 'host'))
  })

  it('never scales a request/reply service to zero', () => {
    assert.ok((so.minReplicaCount ?? 0) >= 1)
  })
})

describe('KEDA, scale to zero (deploy/keda-scale-to-zero)', () => {
  const dir = 'deploy/keda-scale-to-zero'
  const objects = render(dir)
  const so = one(objects, 'ScaledObject').spec as {
    scaleTargetRef: { name: string }, minReplicaCount?: number,
    triggers: Array<{ type: string, metadata: Record<string, string>, authenticationRef?: { name: string } }>
  }
  const enqueuer = deployment(dir, 'relayq-enqueuer')
  const relayq = relayqOf(enqueuer.spec.template.spec)
  const cfg = configOf(envOf(relayq)).enqueuer
  const target = deployment('deploy/k8s/dequeuer-native', so.scaleTargetRef.name)
  const service = configOf(envOf(relayqOf(target.spec.template.spec))).dequeuer?.service ?? ''

  it('goes down to 0, woken by the enqueuers\' external-push scaler, and scales out on the queue (protocol http, activationValue)', () => {
    assert.equal(so.minReplicaCount, 0)
    const push = so.triggers.find((t) => t.type === 'external-push')
    const rabbit = so.triggers.find((t) => t.type === 'rabbitmq')
    assert.ok(push !== undefined && rabbit !== undefined)
    assert.equal(push.metadata.service, service)
    assert.equal(rabbit.metadata.queueName, requestQueue(service))
    assert.equal(rabbit.metadata.protocol, 'http')
    assert.equal(rabbit.metadata.activationValue, '0')
    assert.equal(rabbit.authenticationRef?.name, one(objects, 'TriggerAuthentication').metadata.name)
    // scalerAddress names the enqueuer Service and the port it maps to the scaler's.
    const [host, port] = push.metadata.scalerAddress?.split(':') ?? []
    const svc = one<K8sObject & { spec: { ports: Array<{ name: string, port: number, targetPort: string }> } }>(objects, 'Service', host)
    const mapped = svc.spec.ports.find((p) => p.port === Number(port))
    assert.ok(mapped !== undefined, `${host} exposes ${port}`)
    assert.equal(portOf(relayq, mapped.targetPort), cfg?.coldStart.scalerPort)
  })

  it('runs the enqueuer with ENQUEUER_NO_CONSUMERS=wait, and keeps the client port', () => {
    assert.equal(cfg?.coldStart.noConsumers, 'wait')
    assert.ok(cfg !== null && cfg !== undefined && cfg.coldStart.maxWaiting > 0)
    assert.equal(portOf(relayq, 'http'), cfg.port)
  })

  it('declares the service\'s queues with a Job of the relayq image, before any pod of it runs', () => {
    const job = one<K8sObject & { spec: { template: PodTemplate } }>(objects, 'Job')
    const c = relayqOf(job.spec.template.spec)
    assert.deepEqual((c as Container & { args?: string[] }).args, ['/app/relayq.js', 'declare', '--service', service])
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true)
    assert.equal(c.image, relayq.image)
  })

  it('leaves the default (deploy/keda) at one replica', () => {
    assert.equal((one(render('deploy/keda'), 'ScaledObject').spec as { minReplicaCount?: number }).minReplicaCount, 1)
  })
})

describe('env var names under deploy/', () => {
  const known = (name: string): boolean => name in SPEC || (name.endsWith('_FILE') && (SPEC as Record<string, { file?: boolean }>)[name.slice(0, -5)]?.file === true)

  it('every variable given to relayq, in Kubernetes and compose, is one src/config/spec.ts defines', () => {
    const names = new Set<string>()
    const visit = (node: unknown): void => {
      if (Array.isArray(node)) { node.forEach(visit); return }
      if (node === null || typeof node !== 'object') return
      const o = node as Dict
      if (typeof o.image === 'string' && isRelayq(o as unknown as Container)) for (const e of (o.env as EnvVar[] | undefined) ?? []) names.add(e.name)
      Object.values(o).forEach(visit)
    }
    for (const f of files('deploy').filter((p) => /\.ya?ml$/.test(p))) parseAllDocuments(readFileSync(f, 'utf8')).forEach((d) => visit(d.toJS()))
    for (const dir of K8S) render(dir).forEach(visit)
    for (const s of Object.values(compose().services)) if (s.build !== undefined) Object.keys(s.environment ?? {}).forEach((n) => names.add(n))
    assert.ok(names.size >= 8, `found ${names.size} names`)
    for (const n of names) assert.ok(known(n), `${n} is not a relayq variable`)
  })

  it('every variable-like name in the deploy docs is one too', () => {
    for (const f of files('deploy').filter((p) => p.endsWith('.md'))) {
      for (const [word] of readFileSync(f, 'utf8').matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)) {
        assert.ok(known(word) || (ERROR_CODES as string[]).includes(word), `${f}: ${word} is not a relayq variable`)
      }
    }
  })
})

interface Instruction { op: string, args: string }
interface Stage { from: string, name: string | undefined, body: Instruction[] }

function dockerStages (text: string): Stage[] {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  const stages: Stage[] = []
  for (const line of lines) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? []
    if (op.toUpperCase() === 'FROM') {
      const words = args.split(/\s+/).filter((w) => !w.startsWith('--'))
      stages.push({ from: words[0] ?? '', name: words[1]?.toUpperCase() === 'AS' ? words[2] : undefined, body: [] })
    } else {
      assert.ok(stages.length > 0, `${op} before FROM`)
      stages[stages.length - 1]?.body.push({ op: op.toUpperCase(), args })
    }
  }
  return stages
}

describe('Dockerfile', () => {
  const stages = dockerStages(readFileSync('Dockerfile', 'utf8'))
  const build = stages[0] as Stage
  const runtime = stages[stages.length - 1] as Stage
  const bundle = /outfile:\s*'([^']+)'/.exec(readFileSync('scripts/build.mjs', 'utf8'))?.[1] ?? ''

  it('pins every base image by exact version or digest', () => {
    assert.ok(stages.length >= 2, 'multi-stage')
    for (const s of stages) {
      assert.ok(/@sha256:[0-9a-f]{64}$/.test(s.from) || /:\d+\.\d+\.\d+(-[\w.-]+)?$/.test(s.from), `${s.from} is pinned`)
    }
  })

  it('builds the bundle with npm ci on the Node 20 release the package asks for', () => {
    const m = /^node:(20)\.(\d+)\.(\d+)-bookworm-slim$/.exec(build.from)
    assert.ok(m !== null, `build stage ${build.from} is node:20.x.y-bookworm-slim`)
    const [, , minor, patch] = m.map(Number) as [number, number, number, number]
    const [, floorMinor = 0, floorPatch = 0] = (/>=20\.(\d+)\.(\d+)/.exec((JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }).engines.node) ?? []).map(Number)
    assert.ok(minor > floorMinor || (minor === floorMinor && patch >= floorPatch), 'meets package.json engines')
    const runs = build.body.filter((i) => i.op === 'RUN').map((i) => i.args)
    assert.ok(runs.some((r) => /\bnpm ci\b/.test(r)) && runs.some((r) => /\bnpm run build\b/.test(r)))
  })

  it('final stage: distroless Node 20, only the bundle copied, no npm and no shell commands', () => {
    assert.match(runtime.from, /^gcr\.io\/distroless\/nodejs20-debian12:nonroot@/)
    assert.ok(bundle.endsWith('.js'), 'bundle path read from scripts/build.mjs')
    const copies = runtime.body.filter((i) => i.op === 'COPY' || i.op === 'ADD')
    assert.equal(copies.length, 1, 'one COPY')
    const words = (copies[0] as Instruction).args.split(/\s+/)
    assert.equal(words[0], `--from=${build.name ?? ''}`)
    assert.equal(words.length, 3, 'one source, one destination')
    assert.ok(words[1]?.endsWith(`/${bundle}`), `copies ${bundle}`)
    assert.equal(runtime.body.filter((i) => i.op === 'RUN').length, 0)
    assert.ok(!runtime.body.some((i) => /\bnpm\b|\bnpx\b/.test(i.args)), 'no npm')
  })

  it('runs as a numeric non-root user, node as PID 1 (exec form), RELAYQ_MODE from the environment', () => {
    const user = runtime.body.filter((i) => i.op === 'USER').at(-1)?.args ?? ''
    assert.match(user, /^[1-9]\d*(:\d+)?$/)
    const cmd = runtime.body.filter((i) => i.op === 'CMD' || i.op === 'ENTRYPOINT')
    assert.equal(cmd.length, 1)
    const argv = JSON.parse((cmd[0] as Instruction).args) as string[]
    assert.ok(argv.some((a) => a.endsWith(`/${bundle.split('/').at(-1) ?? ''}`)), 'runs the copied bundle, exec form')
    assert.ok(!runtime.body.some((i) => i.op === 'ENV' && /RELAYQ_MODE/.test(i.args)))
    assert.ok(!runtime.body.some((i) => i.op === 'HEALTHCHECK'))
  })

  it('.dockerignore lets in exactly what the build stage copies', () => {
    const lines = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    assert.equal(lines[0], '*', 'an allow-list')
    const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''))
    for (const copy of build.body.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
      for (const src of copy.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1)) {
        assert.ok(allowed.includes(src.replace(/\/$/, '')), `${src} is let in`)
      }
    }
    for (const never of ['node_modules', 'dist', '.git']) assert.ok(!allowed.some((a) => a === never || a.startsWith(`${never}/`)), never)
  })
})

interface ComposeService { build?: string, image?: string, environment?: Record<string, string>, network_mode?: string, volumes?: string[], read_only?: boolean, user?: string }
const compose = (): { services: Record<string, ComposeService> } => parse(readFileSync('deploy/compose.yaml', 'utf8')) as { services: Record<string, ComposeService> }

function composeClient (): string[] {
  if (spawnSync('docker', ['compose', 'version']).status === 0) return ['docker', 'compose']
  if (spawnSync('docker-compose', ['version']).status === 0) return ['docker-compose']
  assert.fail('no compose client here (docker compose or docker-compose); run scripts/ensure-deploy-tools.sh')
}

describe('deploy/compose.yaml', () => {
  const { services } = compose()

  it('passes the compose client\'s own validation', () => {
    const [cmd = '', ...pre] = composeClient()
    const r = spawnSync(cmd, [...pre, '-f', 'deploy/compose.yaml', 'config', '--quiet'], { encoding: 'utf8' })
    assert.equal(r.status, 0, `${cmd} config failed:\n${r.stderr}`)
  })

  it('runs RabbitMQ with the management and Prometheus plugins, an enqueuer, a service with its dequeuer, Prometheus, Grafana and Jaeger', () => {
    assert.deepEqual(Object.keys(services).sort(), ['grafana', 'jaeger', 'orders', 'orders-dequeuer', 'prometheus', 'rabbitmq', 'relayq-enqueuer'])
    assert.match(services.rabbitmq?.image ?? '', /^rabbitmq:\d+\.\d+\.\d+-management$/)
    assert.ok(services.rabbitmq?.volumes?.includes('./rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro'))
    assert.match(readFileSync('deploy/rabbitmq/enabled_plugins', 'utf8'), /^\[(?=.*\brabbitmq_management\b)(?=.*\brabbitmq_prometheus\b)[a-z_,]+\]\.\n$/)
  })

  it('both relayq services trace to Jaeger\'s OTLP/HTTP receiver, which the file runs', () => {
    for (const name of ['relayq-enqueuer', 'orders-dequeuer']) {
      assert.equal(configOf(services[name]?.environment ?? {}).tracing?.url, 'http://jaeger:4318/v1/traces', name)
    }
    assert.match(services.jaeger?.image ?? '', /^jaegertracing\/all-in-one:\d+\.\d+\.\d+$/)
    assert.equal(services.jaeger?.environment?.COLLECTOR_OTLP_ENABLED, 'true')
  })

  it('builds relayq from the repository\'s Dockerfile and runs it read-only as non-root, with valid settings', () => {
    for (const [name, mode] of [['relayq-enqueuer', 'enqueuer'], ['orders-dequeuer', 'dequeuer']] as const) {
      const s = services[name] as ComposeService
      assert.equal(resolve('deploy', s.build ?? ''), resolve('.'), `${name} builds from the repository root`)
      assert.equal(s.read_only, true)
      assert.match(s.user ?? '', /^[1-9]\d*:/)
      assert.equal(configOf(s.environment ?? {}).mode, mode)
    }
  })

  it('the dequeuer shares the service\'s network namespace, as in a pod, and the enqueuer allows the service', () => {
    const app = services.orders as ComposeService
    const sidecar = services['orders-dequeuer'] as ComposeService
    const dq = configOf(sidecar.environment ?? {}).dequeuer
    const eq = configOf(services['relayq-enqueuer']?.environment ?? {}).enqueuer
    assert.equal(sidecar.network_mode, 'service:orders')
    assert.equal(dq?.service, 'orders')
    assert.equal(dq?.downstreamUrl.hostname, '127.0.0.1')
    assert.equal(dq?.downstreamUrl.port, app.environment?.PORT)
    assert.ok(eq?.services?.has(dq?.service ?? ''))
  })

  it('mounts the Prometheus config and rules and the Grafana dashboard from deploy/, and every mounted file exists', () => {
    const sources = Object.values(services).flatMap((s) => s.volumes ?? []).map((v) => v.split(':')[0] ?? '').filter((p) => p.startsWith('.'))
    const paths = sources.map((p) => relative('.', resolve('deploy', p)))
    for (const p of ['deploy/prometheus/prometheus.yml', 'deploy/prometheus/relayq.rules.yml', 'deploy/grafana/relayq.json']) assert.ok(paths.includes(p), `mounts ${p}`)
    for (const p of paths) assert.ok(existsSync(p), `${p} exists`)
  })
})

interface Permission { user: string, configure: string, write: string, read: string }
interface Definitions {
  users: Array<{ name: string, password_hash: string, tags: string[] }>, permissions: Permission[],
  exchanges: Array<{ name: string, type: string, durable: boolean }>,
  policies: Array<{ name: string, pattern: string, 'apply-to': string, priority: number, definition: Dict }>
}

describe('RabbitMQ definitions and policy', () => {
  const defs = JSON.parse(readFileSync('deploy/rabbitmq/definitions.json', 'utf8')) as Definitions
  const readme = readFileSync('deploy/rabbitmq/README.md', 'utf8')
  const dequeuer = configOf({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'orders', DOWNSTREAM_URL: 'http://127.0.0.1:8080' }).dequeuer
  assert.ok(dequeuer !== null && dequeuer !== undefined)
  const service = dequeuer.service
  const retries = retryDelays(dequeuer).map((ms) => retryQueue(service, ms))
  const own = [requestQueue(service), deadLetterQueue(service), ...retries]
  const others = [requestQueue('payments'), deadLetterQueue('payments'), `${requestQueue(service)}x`, 'relayq_results', 'amq.gen-1']
  const perms = (user: string): Permission => {
    const p = defs.permissions.find((q) => q.user === user)
    assert.ok(p !== undefined, `permissions for ${user}`)
    return p
  }
  const matches = (re: string, names: string[]): string[] => names.filter((n) => new RegExp(re).test(n))

  it('declares relayq\'s dead-letter exchange', () => {
    assert.ok(defs.exchanges.some((e) => e.name === DEAD_LETTER_EXCHANGE && e.type === 'direct' && e.durable))
  })

  it('has the policy relayq prints, for classic and (at a higher priority) quorum queues, on request queues only', () => {
    const expected = (queueType: 'classic' | 'quorum'): Dict => JSON.parse(/'(\{.*\})'/.exec(policyCommand({ service, queueType, declareQueues: false, deliveryLimit: dequeuer.deliveryLimit, messageTtlMs: 0, maxLength: 0 }))?.[1] ?? '') as Dict
    const [classic, quorum] = [0, 1].map((priority) => defs.policies.find((p) => p.priority === priority))
    assert.deepEqual(classic?.definition, expected('classic'))
    assert.deepEqual(quorum?.definition, expected('quorum'))
    for (const p of [classic, quorum]) {
      assert.equal(p?.['apply-to'], 'queues')
      assert.deepEqual(matches(p?.pattern ?? '', [...own, ...others, requestQueue('a.b-c_d')]), [requestQueue(service), requestQueue('payments'), requestQueue('a.b-c_d')])
    }
  })

  it('gives the enqueuer write on amq.default, and its job results queues only', () => {
    const p = perms('relayq-enqueuer')
    // The shared results queue (Redis job store) and an instance's own (in-memory store).
    const results = ['relayq_results', 'relayq_results.0123456789ab']
    const names = [...new Set([...own, ...others, DEAD_LETTER_EXCHANGE, 'amq.default', ...results, 'relayq_results.x', 'orders_results'])]
    assert.deepEqual(matches(p.configure, names), results)
    assert.deepEqual(matches(p.write, names), ['amq.default'])
    assert.deepEqual(matches(p.read, names), results)
  })

  it('gives the dequeuer its own queues and the dead-letter exchange, nothing of other services', () => {
    const p = perms(`relayq-${service}`)
    const names = [...own, ...others, DEAD_LETTER_EXCHANGE, 'amq.default']
    assert.deepEqual(matches(p.configure, names).sort(), [...own, DEAD_LETTER_EXCHANGE].sort())
    assert.deepEqual(matches(p.write, names).sort(), ['amq.default', DEAD_LETTER_EXCHANGE, deadLetterQueue(service)].sort())
    assert.deepEqual(matches(p.read, names).sort(), [...own, DEAD_LETTER_EXCHANGE].sort())
    assert.ok(retries.length > 0, 'retry queues counted')
  })

  it('KEDA\'s user only monitors; no password is committed', () => {
    const keda = defs.users.find((u) => u.name === 'relayq-keda')
    assert.deepEqual(keda?.tags, ['monitoring'])
    assert.deepEqual(perms('relayq-keda'), { user: 'relayq-keda', vhost: '/', configure: '^$', write: '^$', read: '^$' })
    for (const u of defs.users) assert.equal(u.password_hash, '', `${u.name} has no password in the file`)
  })

  it('the README\'s rabbitmqctl lines say the same as definitions.json', () => {
    const policies = [...readme.matchAll(/^rabbitmqctl set_policy (\S+) '([^']+)' '([^']+)' --apply-to (\S+) --priority (\d+)$/gm)]
    assert.equal(policies.length, defs.policies.length)
    for (const [, name, pattern, definition, applyTo, priority] of policies) {
      const p = defs.policies.find((q) => q.name === name)
      assert.ok(p !== undefined, `policy ${name} in definitions.json`)
      assert.deepEqual({ pattern, definition: JSON.parse(definition ?? ''), applyTo, priority: Number(priority) }, { pattern: p.pattern, definition: p.definition, applyTo: p['apply-to'], priority: p.priority })
    }
    const grants = [...readme.matchAll(/^rabbitmqctl set_permissions -p (\S+) (\S+) '([^']*)' '([^']*)' '([^']*)'$/gm)]
    assert.equal(grants.length, defs.permissions.length)
    for (const [, vhost, user, configure, write, read] of grants) assert.deepEqual({ user, vhost, configure, write, read }, perms(user ?? ''))
  })
})

interface Step { uses?: string, run?: string, with?: Record<string, string | boolean> }
interface Job { 'timeout-minutes'?: number, permissions?: Record<string, string>, steps: Step[] }

describe('release workflow', () => {
  const text = readFileSync('.github/workflows/release.yml', 'utf8')
  const wf = parse(text) as { on: { push: { tags: string[] } }, permissions: Dict, concurrency: { group: string }, jobs: Record<string, Job> }
  const jobs = Object.values(wf.jobs)
  const steps = jobs.flatMap((j) => j.steps)

  it('runs on version tags with least permissions, timeouts and a concurrency group', () => {
    assert.deepEqual(wf.on.push.tags, ['v*'])
    assert.deepEqual(wf.permissions, {})
    assert.ok(wf.concurrency.group.length > 0)
    for (const j of jobs) {
      assert.ok((j['timeout-minutes'] ?? 0) > 0 && (j['timeout-minutes'] ?? 0) <= 60)
      const writes = Object.entries(j.permissions ?? {}).filter(([, v]) => v === 'write').map(([k]) => k)
      const needs = (j.steps.some((s) => /gh release/.test(s.run ?? '')) ? ['contents'] : []).concat(j.steps.some((s) => s.with?.push === true) ? ['packages'] : [])
      assert.deepEqual(writes.sort(), needs.sort(), 'write permissions only where used')
    }
  })

  it('pins every action by commit SHA, the same ones as ci.yml where shared', () => {
    const ci = readFileSync('.github/workflows/ci.yml', 'utf8')
    for (const [, action, sha] of text.matchAll(/uses:\s*([^@\s]+)@(\S+)/g)) {
      assert.match(text, new RegExp(`${action}@${sha} # v\\d+\\.\\d+\\.\\d+`), `${action} pinned with its version`)
      assert.match(sha ?? '', /^[0-9a-f]{40}$/, `${action} pinned by SHA`)
      const inCi = new RegExp(`${action}@([0-9a-f]{40})`).exec(ci)?.[1]
      if (inCi !== undefined) assert.equal(sha, inCi, `${action} as in ci.yml`)
    }
  })

  it('builds the bundle and attaches it to the release', () => {
    assert.ok(steps.some((s) => s.run === 'npm run build'))
    assert.ok(steps.some((s) => /gh release upload\b.*\bdist\/relayq\.js\b/.test(s.run ?? '')))
  })

  it('pushes a multi-arch image with provenance to ghcr.io', () => {
    const push = steps.find((s) => s.uses?.startsWith('docker/build-push-action@') === true)
    assert.ok(push?.with !== undefined)
    assert.deepEqual(String(push.with.platforms).split(',').sort(), ['linux/amd64', 'linux/arm64'])
    assert.equal(push.with.push, true)
    assert.match(String(push.with.provenance), /^(true|mode=max|mode=min)$/)
    assert.equal(steps.find((s) => s.uses?.startsWith('docker/login-action@') === true)?.with?.registry, 'ghcr.io')
    assert.match(String(steps.find((s) => s.uses?.startsWith('docker/metadata-action@') === true)?.with?.images), /^ghcr\.io\//)
  })
})
