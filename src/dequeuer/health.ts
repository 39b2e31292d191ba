// Downstream health gating (ProxyMQ's HEALTH_CHECK_*): relayq consumes only
// while HEALTH_CHECK_URL answers 2xx. At start-up it waits for the first
// healthy answer (giving up after HEALTH_CHECK_MAX_RETRIES failures when that
// is not 0); afterwards each check can pause or resume consumption.
import { httpCall } from '../http/client'
import type { Logger } from 'pino'
import type { HealthConfig } from '../config/types'
import type { DequeuerMetrics } from '../metrics/dequeuer'

export interface HealthEvents {
  onHealthy: () => void
  onUnhealthy: (why: string) => void
  /** Start-up gave up after HEALTH_CHECK_MAX_RETRIES failed checks. */
  onGiveUp: (why: string) => void
}

export class HealthMonitor {
  private timer: NodeJS.Timeout | null = null
  private healthy: boolean | null = null
  private startupFailures = 0
  private everHealthy = false
  private stopped = false

  constructor (
    private readonly cfg: HealthConfig & { url: URL },
    private readonly logger: Logger,
    private readonly metrics: DequeuerMetrics,
    private readonly events: HealthEvents,
  ) {}

  start (): void {
    void this.tick()
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
  }

  /** One check, as the breaker's half-open probe uses it. */
  async check (): Promise<{ ok: boolean, why: string }> {
    const started = performance.now()
    try {
      const res = await httpCall(this.cfg.url, { timeoutMs: this.cfg.timeoutMs })
      const ok = res.status >= 200 && res.status < 300
      this.metrics.healthCheck((performance.now() - started) / 1000, res.status, ok)
      return { ok, why: `health check answered ${res.status}` }
    } catch (err) {
      this.metrics.healthCheck((performance.now() - started) / 1000, 'error', false)
      return { ok: false, why: `health check failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }
    }
  }

  private async tick (): Promise<void> {
    if (this.stopped) return
    const { ok, why } = await this.check()
    if (this.stopped) return
    if (ok && this.healthy !== true) {
      this.healthy = true
      this.everHealthy = true
      this.logger.info('service is healthy')
      this.events.onHealthy()
    } else if (!ok && this.healthy !== false) {
      if (this.healthy === true) this.logger.warn({ why }, 'service became unhealthy; pausing consumption')
      this.healthy = false
      this.events.onUnhealthy(why)
    }
    if (!ok && !this.everHealthy && this.cfg.maxRetries > 0 && ++this.startupFailures >= this.cfg.maxRetries) {
      this.events.onGiveUp(`${why} (${this.startupFailures} attempts)`)
      return
    }
    this.timer = setTimeout(() => { void this.tick() }, this.cfg.intervalMs)
  }
}
