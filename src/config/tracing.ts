// The OTEL_* variables, read here like every other variable (the SDK is built
// from this typed config and never reads the environment itself). Tracing is
// off unless asked for: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint given.
import type { Reader } from './load'
import type { Mode, TracingConfig } from './types'

const DEFAULT_ENDPOINT = 'http://localhost:4318'

export function readTracing (r: Reader, mode: Mode): TracingConfig | null {
  const disabled = r.get('OTEL_SDK_DISABLED')
  const exporter = r.get('OTEL_TRACES_EXPORTER')
  const tracesEndpoint = r.get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
  const endpoint = r.get('OTEL_EXPORTER_OTLP_ENDPOINT')
  const protocol = r.get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? r.get('OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf'
  const headers = r.get('OTEL_EXPORTER_OTLP_HEADERS') ?? {}
  const resource = r.get('OTEL_RESOURCE_ATTRIBUTES') ?? {}
  const sampler = r.get('OTEL_TRACES_SAMPLER')
  const ratio = r.get('OTEL_TRACES_SAMPLER_ARG')
  const maxQueueSize = r.get('OTEL_BSP_MAX_QUEUE_SIZE')
  const exportTimeoutMs = r.get('OTEL_EXPORTER_OTLP_TRACES_TIMEOUT')
  const serviceName = r.get('OTEL_SERVICE_NAME') ?? resource['service.name'] ?? `relayq-${mode}`
  const on = exporter === 'otlp' || (exporter === undefined && (tracesEndpoint !== undefined || endpoint !== undefined))
  if (disabled || !on) return null
  // The signal-specific endpoint is used as given; the general one gets the signal's path (OTLP exporter spec).
  const url = tracesEndpoint?.href ?? new URL('v1/traces', withSlash(endpoint?.href ?? DEFAULT_ENDPOINT)).href
  return { url, protocol, headers, serviceName, resource, sampler, ratio, maxQueueSize, exportTimeoutMs }
}

function withSlash (base: string): string {
  return base.endsWith('/') ? base : base + '/'
}
