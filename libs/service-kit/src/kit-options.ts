import {
  addressVar,
  booleanVar,
  bytesVar,
  durationMsVar,
  enumVar,
  stringVar,
  type ConfigValues,
} from './config.js';
import { LOG_LEVELS } from './logger.js';

/** The four services of the mesh and the port each listens on by default. */
export const DEFAULT_PORTS = {
  executor: 7101,
  scanner: 7102,
  memory: 7103,
  audit: 7104,
} as const;

export type ServiceName = keyof typeof DEFAULT_PORTS;

/** Variable holding where a service listens, and where its peers reach it. */
export function addressVariable(service: ServiceName): string {
  return `CORDON_${service.toUpperCase()}_ADDRESS`;
}

/** Settings every service reads, whatever it does. */
export function kitConfigSpec(service: ServiceName) {
  return {
    address: addressVar(addressVariable(service), {
      description: `Address the ${service} service listens on, and that other services dial.`,
      default: `127.0.0.1:${DEFAULT_PORTS[service]}`,
    }),
    logLevel: enumVar('CORDON_LOG_LEVEL', LOG_LEVELS, {
      description: 'Lowest level written to the log.',
      default: 'info',
    }),
    maxReceiveMessageBytes: bytesVar('CORDON_GRPC_MAX_RECEIVE_MESSAGE_BYTES', {
      description: 'Largest request message a service accepts.',
      default: 16 * 1024 ** 2,
      min: 64 * 1024,
      max: 256 * 1024 ** 2,
    }),
    maxSendMessageBytes: bytesVar('CORDON_GRPC_MAX_SEND_MESSAGE_BYTES', {
      description: 'Largest response message a service sends.',
      default: 16 * 1024 ** 2,
      min: 64 * 1024,
      max: 256 * 1024 ** 2,
    }),
    keepaliveTimeMs: durationMsVar('CORDON_GRPC_KEEPALIVE_TIME_MS', {
      description: 'Interval of keepalive pings on idle connections.',
      default: 30_000,
      min: 1_000,
      max: 3_600_000,
    }),
    keepaliveTimeoutMs: durationMsVar('CORDON_GRPC_KEEPALIVE_TIMEOUT_MS', {
      description: 'How long a keepalive ping may go unanswered before the connection is closed.',
      default: 10_000,
      min: 1_000,
      max: 600_000,
    }),
    shutdownDrainMs: durationMsVar('CORDON_SHUTDOWN_DRAIN_MS', {
      description: 'How long calls in flight may run on after SIGTERM before they are cancelled.',
      default: 10_000,
      min: 0,
      max: 600_000,
    }),
    traceFile: stringVar('CORDON_TRACE_FILE', {
      description:
        'File that finished spans are appended to as JSON Lines, for debugging without a collector.',
      default: '',
      pattern: /^\/\S+$/,
      allowed: 'an absolute file path',
    }),
    tokenKeyFile: stringVar('CORDON_TOKEN_KEY_FILE', {
      description:
        'File with the key tokens are signed with: an HS256 secret of at least 32 bytes, or an Ed25519 private key in PEM. Mode 0600 or stricter. Empty uses token.key in the state folder, created on first start.',
      default: '',
      pattern: /^\/\S+$/,
      allowed: 'an absolute file path',
    }),
    tlsCa: stringVar('CORDON_TLS_CA', {
      description:
        'PEM file of the CA that signs every certificate of the mesh; enables mutual TLS.',
      default: '',
      pattern: /^\/\S+$/,
      allowed: 'an absolute file path',
    }),
    tlsCert: stringVar('CORDON_TLS_CERT', {
      description: 'PEM certificate this process presents, signed by CORDON_TLS_CA.',
      default: '',
      pattern: /^\/\S+$/,
      allowed: 'an absolute file path',
    }),
    tlsKey: stringVar('CORDON_TLS_KEY', {
      description: 'PEM private key of CORDON_TLS_CERT.',
      default: '',
      pattern: /^\/\S+$/,
      allowed: 'an absolute file path',
    }),
    allowInsecureBind: booleanVar('CORDON_ALLOW_INSECURE_BIND', {
      description: 'Lets a service without TLS listen on an address other than loopback.',
      default: false,
    }),
    otlpEndpoint: stringVar('OTEL_EXPORTER_OTLP_ENDPOINT', {
      description: 'OTLP/gRPC collector for traces; empty exports nothing.',
      default: '',
      pattern: /^https?:\/\/[^\s]+$/,
      allowed: 'an http:// or https:// URL, such as http://127.0.0.1:4317',
    }),
  };
}

export type KitConfig = ConfigValues<ReturnType<typeof kitConfigSpec>>;
