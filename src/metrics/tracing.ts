// Tracing's own books: spans sent to the collector, and spans dropped because
// the export queue was full or the collector did not take them. Registered in
// every process (zero while tracing is off), so dashboards need no condition.
import client from 'prom-client'
import { noop, type Registry } from './registry'

export type DropReason = 'queue_full' | 'export_failed'
export type TracingMetrics = ReturnType<typeof realTracingMetrics>

export function createTracingMetrics (registry: Registry | null): TracingMetrics {
  if (registry === null) return noop(realTracingMetrics(new client.Registry()))
  return realTracingMetrics(registry)
}

function realTracingMetrics (registry: Registry) {
  const dropped = new client.Counter({ name: 'relayq_tracing_spans_dropped_total', help: 'Spans not exported: the export queue was full (queue_full) or the collector failed, refused or was too slow (export_failed).', labelNames: ['reason'], registers: [registry] })
  const exported = new client.Counter({ name: 'relayq_tracing_spans_exported_total', help: 'Spans the collector accepted.', registers: [registry] })
  dropped.labels('queue_full').inc(0)
  dropped.labels('export_failed').inc(0)
  return {
    dropped: (reason: DropReason, n: number) => dropped.labels(reason).inc(n),
    exported: (n: number) => exported.inc(n),
  }
}
