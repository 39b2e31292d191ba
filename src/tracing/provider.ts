// Builds the export side of tracing from the typed config (the SDK never reads
// the environment here): the resource, one batch processor and an OTLP/HTTP
// exporter; spans are relayq's RecordedSpans (span.ts). Export runs in the background; what
// waits for it is bounded (OTEL_BSP_MAX_QUEUE_SIZE spans, queued or being
// sent), and a span beyond that, or in a batch the collector did not take, is
// dropped and counted: a collector that is down or slow never holds a request.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base'
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http'
import { TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace'
import type { Logger } from 'pino'
import type { TracingConfig } from '../config/types'
import type { TracingMetrics } from '../metrics/tracing'
import { VERSION } from '../version'
import { spanSerializer } from './otlp-proto'
import type { SpanOrigin } from './span'

/** Spans per export request (the SDK's default). */
const BATCH_SIZE = 512
/** How often a failing collector is logged: once a minute, not once a batch. */
const LOG_EVERY_MS = 60_000

/** Where a process's spans go, and how it flushes them at shutdown. */
export interface SpanPipeline extends SpanOrigin {
  /** Sends what is queued now (bench/tracing-cost.ts counts the export in a span's cost). */
  forceFlush: () => Promise<void>
  shutdown: () => Promise<void>
}

export function createPipeline (cfg: TracingConfig, mode: string, metrics: TracingMetrics, logger: Logger): SpanPipeline {
  const batchSize = Math.min(BATCH_SIZE, cfg.maxQueueSize)
  const options = {
    url: cfg.url,
    headers: { ...cfg.headers },
    timeoutMillis: cfg.exportTimeoutMs,
    // Memory is bounded by maxQueueSize, which counts spans being sent too; a flush (at shutdown) sends every
    // batch at once, and the exporter would refuse those past its limit.
    concurrencyLimit: Math.ceil(cfg.maxQueueSize / batchSize) + 1,
    // Set here so the exporter's own fallback to OTEL_EXPORTER_OTLP_COMPRESSION never applies.
    compression: 'none' as never,
  }
  const exporter = cfg.protocol === 'http/json' ? new JsonExporter(options) : protobufExporter(options)
  const bounded = new BoundedExport(exporter, cfg.maxQueueSize, metrics, logger)
  const batch = new BatchSpanProcessor({
    exporter: bounded,
    // The bound is kept by BoundedExport (which also counts spans being sent); this one never fills first.
    maxQueueSize: cfg.maxQueueSize,
    maxExportBatchSize: batchSize,
    scheduledDelayMillis: 1000,
    exportTimeoutMillis: cfg.exportTimeoutMs + 1000,
  })
  const admit = new Admit(batch, bounded)
  return {
    resource: resourceFromAttributes({ ...cfg.resource, 'service.name': cfg.serviceName, 'service.version': VERSION, 'relayq.mode': mode }),
    scope: { name: 'relayq', version: VERSION },
    sink: admit,
    forceFlush: () => admit.forceFlush(),
    shutdown: () => admit.shutdown(),
  }
}

/**
 * @opentelemetry/exporter-trace-otlp-proto's exporter, built from the same
 * public parts, with relayq's serialiser (otlp-proto.ts) in place of the
 * SDK's: same requests, byte for byte, in about half the time.
 */
function protobufExporter (options: Parameters<typeof convertLegacyHttpOptions>[0]): SpanExporter {
  const http = convertLegacyHttpOptions(options, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' })
  return new OTLPExporterBase(createOtlpHttpExportDelegate(http, spanSerializer, 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined))
}

/** Counts the spans held for export and drops (counting) past the bound, before the batch processor sees them. */
class Admit {
  constructor (private readonly inner: SpanProcessor, private readonly bounded: BoundedExport) {}

  onEnd (span: ReadableSpan): void {
    if (this.bounded.admit()) this.inner.onEnd(span)
  }

  forceFlush (): Promise<void> {
    return this.inner.forceFlush()
  }

  shutdown (): Promise<void> {
    return this.inner.shutdown()
  }
}

class BoundedExport implements SpanExporter {
  private held = 0
  private lastLog = 0

  constructor (private readonly inner: SpanExporter, private readonly max: number, private readonly metrics: TracingMetrics, private readonly logger: Logger) {}

  admit (): boolean {
    if (this.held >= this.max) {
      this.metrics.dropped('queue_full', 1)
      return false
    }
    this.held++
    return true
  }

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    let once = false
    const finish = (result: ExportResult): void => {
      if (once) return
      once = true
      this.held = Math.max(0, this.held - spans.length)
      if (result.code === ExportResultCode.SUCCESS) this.metrics.exported(spans.length)
      else this.failed(spans.length, result.error)
      done(result)
    }
    try {
      this.inner.export(spans, finish)
    } catch (err) {
      finish({ code: ExportResultCode.FAILED, error: err as Error })
    }
  }

  private failed (count: number, error: Error | undefined): void {
    this.metrics.dropped('export_failed', count)
    const now = Date.now()
    if (now - this.lastLog < LOG_EVERY_MS) return
    this.lastLog = now
    this.logger.warn({ err: error?.message, spans: count }, 'span export failed; spans dropped (relayq_tracing_spans_dropped_total)')
  }

  shutdown (): Promise<void> {
    return this.inner.shutdown()
  }

  forceFlush (): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve()
  }
}
