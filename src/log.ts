// JSON lines on stdout (pino, no transports: no worker threads, bundles
// cleanly). Levels as names and ISO times, which Loki, ELK and Cloud Logging
// read without configuration.
import pino, { type Logger } from 'pino'
import type { LogLevel } from './config/types'

export type { Logger }

export function createLogger (level: LogLevel, base: Record<string, unknown> = {}, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid, ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Secrets never reach a log line, even if a caller passes a whole object.
    redact: { paths: ['password', '*.password', 'url', '*.url', 'authorization', '*.authorization'], censor: '[redacted]' },
  }
  return destination === undefined ? pino(options) : pino(options, destination)
}
