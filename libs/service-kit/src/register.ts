/**
 * Loaded with `node --import @cordon/service-kit/register` before a
 * service's own modules. It lets OpenTelemetry see ESM imports of grpc-js;
 * `startTelemetry` then patches grpc-js, even after it was imported.
 */
import { register } from 'node:module';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
