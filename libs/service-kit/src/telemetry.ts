import { Server } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  NoopSpanProcessor,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { SpanFileExporter } from './span-file-exporter.js';
import { NodeSDK } from '@opentelemetry/sdk-node';

export interface TelemetryOptions {
  /** Reported as `service.name`, e.g. "cordon-executor". */
  serviceName: string;
  /** OTLP/gRPC collector; when empty, spans are made but not exported. */
  otlpEndpoint: string;
  /** File to append finished spans to as JSON Lines; empty writes none. */
  traceFile?: string;
  /** Extra span processors, such as an in-memory exporter in tests. */
  spanProcessors?: SpanProcessor[];
}

export interface Telemetry {
  /** True when grpc-js was patched, so calls carry W3C trace context. */
  readonly grpcInstrumented: boolean;
  /** Flushes pending spans and stops the SDK. */
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry NodeSDK with gRPC instrumentation and W3C trace
 * context. Spans are always recorded, so every run has a trace id for the
 * audit log, even when nothing is exported.
 *
 * The gRPC instrumentation can patch grpc-js only when the process started
 * with `--import @cordon/service-kit/register`: our code is ESM, and ESM
 * imports are invisible to the CommonJS hooks OpenTelemetry uses otherwise.
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  const spanProcessors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  if (options.traceFile !== undefined && options.traceFile !== '') {
    spanProcessors.push(new SimpleSpanProcessor(new SpanFileExporter(options.traceFile)));
  }
  if (options.otlpEndpoint !== '') {
    spanProcessors.push(
      new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpEndpoint })),
    );
  }
  if (spanProcessors.length === 0) {
    // NodeSDK installs no tracer provider without a processor, and then no
    // span would get a trace id.
    spanProcessors.push(new NoopSpanProcessor());
  }

  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      'service.name': options.serviceName,
      'service.namespace': 'cordon',
    }),
    autoDetectResources: false,
    spanProcessors,
    logRecordProcessors: [],
    instrumentations: [
      new GrpcInstrumentation({
        ignoreGrpcMethods: ['Check', 'Watch', 'ServerReflectionInfo'],
      }),
    ],
  });
  sdk.start();

  return {
    grpcInstrumented: isGrpcServerPatched(),
    shutdown: () => sdk.shutdown(),
  };
}

function isGrpcServerPatched(): boolean {
  // shimmer, which OpenTelemetry patches with, marks wrapped functions so.
  const register: unknown = Object.getOwnPropertyDescriptor(Server.prototype, 'register')?.value;
  return (register as { __wrapped?: boolean } | undefined)?.__wrapped === true;
}

/** Returns the trace id of the active span, if one is active. */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
