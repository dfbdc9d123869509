import { format } from 'node:util';
import { setLogger, setLogVerbosity, logVerbosity } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import {
  destination,
  pino,
  stdTimeFunctions,
  type DestinationStream,
  type Logger,
  type LevelWithSilent,
} from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * Paths that may carry secrets, code, stdin, output or memory values. They
 * are censored wherever a log call passes them, one level deep or at the top.
 */
export const REDACTED_PATHS: readonly string[] = [
  'authorization',
  'token',
  'password',
  'secret',
  'metadata.authorization',
  'headers.authorization',
  'request.files',
  'request.stdin',
  'request.env',
  'request.value',
  'files',
  'stdin',
  'env',
  'value',
  'output',
  '*.authorization',
  '*.token',
  '*.password',
  '*.secret',
];

export interface LoggerOptions {
  service: string;
  level: LevelWithSilent;
  /** Destination of the lines, standard output when unset. */
  destination?: DestinationStream;
}

/**
 * Creates the service's pino logger. Every line carries `service`, and
 * `trace_id` and `span_id` whenever an OpenTelemetry span is active.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: options.service },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
      mixin: () => {
        const span = trace.getActiveSpan();
        if (span === undefined) {
          return {};
        }
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
    },
    options.destination ?? destination({ dest: 1, sync: true }),
  );
}

/**
 * Routes grpc-js's own diagnostics into pino. grpc-js keeps one logger per
 * process, so the last service to call this owns it.
 */
export function routeGrpcLogs(logger: Logger): void {
  const grpcLogger = logger.child({ component: 'grpc-js' });
  setLogger({
    error: (message?: unknown, ...rest: unknown[]) => {
      grpcLogger.warn(format(message, ...rest));
    },
  });
  setLogVerbosity(logger.isLevelEnabled('debug') ? logVerbosity.DEBUG : logVerbosity.ERROR);
}
