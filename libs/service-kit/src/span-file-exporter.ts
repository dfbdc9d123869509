import { appendFileSync } from 'node:fs';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

/**
 * Writes finished spans as JSON Lines to a local file: one object per span
 * with its trace and span ids, parent, name, service and times. For local
 * debugging and tests where no collector runs; OTLP is the production path.
 */
export class SpanFileExporter implements SpanExporter {
  constructor(private readonly path: string) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    try {
      const lines = spans.map((span) =>
        JSON.stringify({
          trace_id: span.spanContext().traceId,
          span_id: span.spanContext().spanId,
          parent_span_id: span.parentSpanContext?.spanId ?? '',
          name: span.name,
          service: span.resource.attributes['service.name'],
          start_time: span.startTime,
          end_time: span.endTime,
          attributes: span.attributes,
        }),
      );
      appendFileSync(this.path, lines.map((line) => `${line}\n`).join(''));
      resultCallback({ code: ExportResultCode.SUCCESS });
    } catch (error) {
      resultCallback({ code: ExportResultCode.FAILED, error: error as Error });
    }
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
