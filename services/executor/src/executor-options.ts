import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  addressVar,
  bytesVar,
  ConfigError,
  defaultStatePath,
  durationMsVar,
  enumVar,
  integerVar,
  stringVar,
  type ConfigValues,
  type VarSpec,
} from '@cordon/service-kit';
import { scanPolicyVar, type ScanPolicy } from './scan-gate.js';

/** The per-run limits a request may set, by their proto field names. */
export const LIMIT_FIELDS = [
  'wallTimeMs',
  'cpuTimeMs',
  'memoryBytes',
  'maxProcesses',
  'maxOutputBytes',
  'tmpBytes',
  'maxOpenFiles',
  'maxFileBytes',
] as const;

export type LimitField = (typeof LIMIT_FIELDS)[number];
export type RunLimits = Record<LimitField, number>;

interface LimitSpec {
  /** Field name in the proto, for error messages. */
  protoName: string;
  /** Stem of the env vars: CORDON_DEFAULT_<stem> and CORDON_MAX_<stem>. */
  envStem: string;
  kind: 'duration' | 'bytes' | 'count';
  /** Smallest value a request may ask for. */
  min: number;
  default: number;
  max: number;
  /** Largest value an operator may set as the maximum. */
  ceiling: number;
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** Defaults and maxima of every limit, each overridable by its CORDON_DEFAULT_* and CORDON_MAX_* variables. */
export const LIMIT_SPECS: Record<LimitField, LimitSpec> = {
  wallTimeMs: {
    protoName: 'wall_time_ms',
    envStem: 'WALL_TIME_MS',
    kind: 'duration',
    min: 1,
    default: 10_000,
    max: 300_000,
    ceiling: 3_600_000,
  },
  cpuTimeMs: {
    protoName: 'cpu_time_ms',
    envStem: 'CPU_TIME_MS',
    kind: 'duration',
    min: 1,
    default: 10_000,
    max: 300_000,
    ceiling: 3_600_000,
  },
  memoryBytes: {
    protoName: 'memory_bytes',
    envStem: 'MEMORY_BYTES',
    kind: 'bytes',
    // Docker refuses a memory limit under 6 MiB; 16 MiB leaves room for the launcher.
    min: 16 * MiB,
    default: 256 * MiB,
    max: GiB,
    ceiling: 64 * GiB,
  },
  maxProcesses: {
    protoName: 'max_processes',
    envStem: 'PROCESSES',
    kind: 'count',
    // The launcher extracts the files with head and tar, two processes at once.
    min: 2,
    default: 64,
    max: 1024,
    ceiling: 32_768,
  },
  maxOutputBytes: {
    protoName: 'max_output_bytes',
    envStem: 'OUTPUT_BYTES',
    kind: 'bytes',
    min: 1,
    default: MiB,
    max: 64 * MiB,
    ceiling: GiB,
  },
  tmpBytes: {
    protoName: 'tmp_bytes',
    envStem: 'TMP_BYTES',
    kind: 'bytes',
    min: MiB,
    default: 64 * MiB,
    max: GiB,
    ceiling: 64 * GiB,
  },
  maxOpenFiles: {
    protoName: 'max_open_files',
    envStem: 'OPEN_FILES',
    kind: 'count',
    // Fewer descriptors than this and the runtimes cannot start at all.
    min: 16,
    default: 256,
    max: 4096,
    ceiling: 1_048_576,
  },
  maxFileBytes: {
    protoName: 'max_file_bytes',
    envStem: 'FILE_BYTES',
    kind: 'bytes',
    min: 1,
    default: 64 * MiB,
    max: GiB,
    ceiling: 64 * GiB,
  },
};

function limitVar(
  name: string,
  spec: LimitSpec,
  value: number,
  description: string,
): VarSpec<number> {
  const range = { description, default: value, min: spec.min, max: spec.ceiling };
  if (spec.kind === 'duration') return durationMsVar(name, range);
  if (spec.kind === 'bytes') return bytesVar(name, range);
  return integerVar(name, range);
}

function limitVars(): Record<string, VarSpec<number>> {
  const vars: Record<string, VarSpec<number>> = {};
  for (const field of LIMIT_FIELDS) {
    const spec = LIMIT_SPECS[field];
    vars[`default:${field}`] = limitVar(
      `CORDON_DEFAULT_${spec.envStem}`,
      spec,
      spec.default,
      `Value of limits.${spec.protoName} when a request leaves it unset.`,
    );
    vars[`max:${field}`] = limitVar(
      `CORDON_MAX_${spec.envStem}`,
      spec,
      spec.max,
      `Largest limits.${spec.protoName} a request may ask for.`,
    );
  }
  return vars;
}

const DEFAULT_CATALOG = fileURLToPath(
  new URL('../../../sandbox-images/catalog.json', import.meta.url),
);

/** Sandboxes kept warm per runtime: a count for every runtime, and runtime=count pairs for some. */
export interface WarmPoolSizes {
  readonly everyRuntime: number;
  readonly byRuntime: ReadonlyMap<string, number>;
}

const MAX_WARM_POOL_SIZE = 64;
const POOL_ENTRY_PATTERN = /^(?:([a-z][a-z0-9-]*)=)?(\d+)$/;

function parsePoolSizes(text: string): WarmPoolSizes | undefined {
  let everyRuntime: number | undefined;
  const byRuntime = new Map<string, number>();
  for (const entry of text.split(',').map((part) => part.trim())) {
    const match = POOL_ENTRY_PATTERN.exec(entry);
    const count = Number(match?.[2]);
    if (match === null || count > MAX_WARM_POOL_SIZE) return undefined;
    const runtimeId = match[1];
    if (runtimeId === undefined) {
      if (everyRuntime !== undefined) return undefined;
      everyRuntime = count;
    } else {
      if (byRuntime.has(runtimeId)) return undefined;
      byRuntime.set(runtimeId, count);
    }
  }
  return { everyRuntime: everyRuntime ?? 0, byRuntime };
}

function warmPoolSizeVar(
  name: string,
  description: string,
  defaultCount: number,
): VarSpec<WarmPoolSizes> {
  return {
    name,
    description,
    defaultValue: { everyRuntime: defaultCount, byRuntime: new Map() },
    allowed: `a count from 0 to ${MAX_WARM_POOL_SIZE} for every runtime and/or runtime=count pairs, comma-separated, e.g. "2" or "2,java=0"`,
    parse: parsePoolSizes,
  };
}

export const executorConfigSpec = {
  ...limitVars(),
  dockerSocket: stringVar('CORDON_DOCKER_SOCKET', {
    description: 'Unix socket of the Docker engine.',
    default: '/var/run/docker.sock',
    pattern: /^\/\S+$/,
    allowed: 'an absolute path to a Unix socket',
  }),
  sandboxDriver: enumVar('CORDON_SANDBOX_DRIVER', ['auto', 'docker', 'process'], {
    description:
      'docker, process (bubblewrap), or auto: Docker when its engine responds at start-up, else bubblewrap.',
    default: 'auto',
  }),
  dockerRuntime: enumVar('CORDON_DOCKER_RUNTIME', ['runc', 'runsc'], {
    description: 'OCI runtime of every sandbox: runc, or runsc for gVisor.',
    default: 'runc',
  }),
  sandboxCpus: integerVar('CORDON_SANDBOX_MILLICPUS', {
    description: 'CPU quota of one sandbox, in thousandths of a core.',
    default: 1000,
    min: 100,
    max: 64_000,
  }),
  compileWallTimeMs: durationMsVar('CORDON_COMPILE_WALL_TIME_MS', {
    description:
      'Wall-clock limit of the compile phase; the run phase then gets limits.wall_time_ms.',
    default: 30_000,
    min: 1_000,
    max: 600_000,
  }),
  maxConcurrentRuns: integerVar('CORDON_MAX_CONCURRENT_RUNS', {
    description: 'Sandboxes that may exist at once; further runs wait for a slot.',
    default: 8,
    min: 1,
    max: 1024,
  }),
  maxQueuedRuns: integerVar('CORDON_MAX_QUEUED_RUNS', {
    description:
      'Runs that may wait for a free slot; one more is rejected with RESOURCE_EXHAUSTED.',
    default: 64,
    min: 0,
    max: 100_000,
  }),
  queueTimeoutMs: durationMsVar('CORDON_QUEUE_TIMEOUT_MS', {
    description: 'How long a run may wait for a free slot before it is rejected.',
    default: 30_000,
    min: 0,
    max: 3_600_000,
  }),
  maxFiles: integerVar('CORDON_MAX_FILES', {
    description: 'Most files one request may submit.',
    default: 100,
    min: 1,
    max: 10_000,
  }),
  maxSourceBytes: bytesVar('CORDON_MAX_SOURCE_BYTES', {
    description: 'Largest total size of the files of one request.',
    default: 8 * MiB,
    min: 1024,
    max: 256 * MiB,
  }),
  maxStdinBytes: bytesVar('CORDON_MAX_STDIN_BYTES', {
    description: 'Largest stdin of one request.',
    default: 8 * MiB,
    min: 0,
    max: 256 * MiB,
  }),
  audit: enumVar('CORDON_EXECUTOR_AUDIT', ['required', 'off'], {
    description:
      'required: every run is recorded in the audit service and none starts unrecorded; off: no audit.',
    default: 'required',
  }),
  auditAddress: addressVar('CORDON_AUDIT_ADDRESS', {
    description: 'Where the audit service listens.',
    default: '127.0.0.1:7104',
  }),
  auditOutputBytes: bytesVar('CORDON_AUDIT_OUTPUT_BYTES', {
    description: 'Bytes of stdout and of stderr of each run kept in the audit log.',
    default: 64 * 1024,
    min: 0,
    max: 16 * MiB,
  }),
  spoolFolder: stringVar('CORDON_EXECUTOR_SPOOL_DIR', {
    description: 'Folder for audit records that wait for the audit service to come back.',
    default: defaultStatePath('executor-spool'),
    pattern: /^\/\S+$/,
    allowed: 'an absolute folder path',
  }),
  warmPoolSizes: warmPoolSizeVar(
    'CORDON_WARM_POOL_SIZE',
    'Started, never-used sandboxes kept ready per runtime (Docker with runc only); 0 turns the pool off.',
    2,
  ),
  warmPoolMaxIdleMs: durationMsVar('CORDON_WARM_POOL_MAX_IDLE_MS', {
    description: 'Warm sandboxes idle longer than this are replaced by fresh ones.',
    default: 600_000,
    min: 1_000,
    max: 86_400_000,
  }),
  warmPoolRefillConcurrency: integerVar('CORDON_WARM_POOL_REFILL_CONCURRENCY', {
    description:
      'Warm sandboxes started at once to refill the pools; refills pause while runs wait.',
    default: 2,
    min: 1,
    max: 64,
  }),
  scanPolicy: scanPolicyVar,
  scannerAddress: addressVar('CORDON_SCANNER_ADDRESS', {
    description: 'Where the scanner listens.',
    default: '127.0.0.1:7102',
  }),
  scanDeadlineMs: durationMsVar('CORDON_SCAN_DEADLINE_MS', {
    description: 'How long the scan before a run may take before it counts as failed.',
    default: 10_000,
    min: 100,
    max: 300_000,
  }),
  catalogPath: stringVar('CORDON_RUNTIME_CATALOG', {
    description: 'Path of the runtime catalog.',
    default: DEFAULT_CATALOG,
    pattern: /^\/\S+\.json$/,
    allowed: 'an absolute path to a .json file',
  }),
  instanceId: stringVar('CORDON_EXECUTOR_ID', {
    description: 'Id of this executor instance, written on every container it creates.',
    default: `executor-${randomUUID()}`,
    pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/,
    allowed: 'up to 128 letters, digits, dots, dashes and underscores',
  }),
};

export type ExecutorConfig = ConfigValues<typeof executorConfigSpec>;

/** Executor settings after validation, with units in every name. */
export interface ExecutorOptions {
  readonly defaults: RunLimits;
  readonly maxima: RunLimits;
  readonly dockerSocket: string;
  readonly sandboxDriver: 'auto' | 'docker' | 'process';
  readonly dockerRuntime: 'runc' | 'runsc';
  readonly sandboxNanoCpus: number;
  readonly compileWallTimeMs: number;
  readonly maxConcurrentRuns: number;
  readonly maxQueuedRuns: number;
  readonly queueTimeoutMs: number;
  readonly maxFiles: number;
  readonly maxSourceBytes: number;
  readonly maxStdinBytes: number;
  readonly warmPoolSizes: WarmPoolSizes;
  readonly warmPoolMaxIdleMs: number;
  readonly warmPoolRefillConcurrency: number;
  readonly scanPolicy: ScanPolicy;
  readonly scannerAddress: string;
  readonly scanDeadlineMs: number;
  readonly catalogPath: string;
  readonly instanceId: string;
  readonly audit: 'required' | 'off';
  readonly auditAddress: string;
  readonly auditOutputBytes: number;
  readonly spoolFolder: string;
}

/** Checks the limits against each other and normalises units; throws with one line when they disagree. */
export function compileExecutorOptions(config: ExecutorConfig): ExecutorOptions {
  const values = config as unknown as Record<string, number>;
  const defaults = {} as RunLimits;
  const maxima = {} as RunLimits;
  for (const field of LIMIT_FIELDS) {
    const spec = LIMIT_SPECS[field];
    const defaultValue = values[`default:${field}`] ?? spec.default;
    const maxValue = values[`max:${field}`] ?? spec.max;
    if (defaultValue > maxValue) {
      throw new ConfigError(
        `CORDON_DEFAULT_${spec.envStem}`,
        `invalid configuration: CORDON_DEFAULT_${spec.envStem} (${defaultValue}) is above CORDON_MAX_${spec.envStem} (${maxValue}); lower the default or raise the maximum`,
      );
    }
    defaults[field] = defaultValue;
    maxima[field] = maxValue;
  }

  return {
    defaults,
    maxima,
    dockerSocket: config.dockerSocket,
    sandboxDriver: config.sandboxDriver,
    dockerRuntime: config.dockerRuntime,
    sandboxNanoCpus: config.sandboxCpus * 1_000_000,
    compileWallTimeMs: config.compileWallTimeMs,
    maxConcurrentRuns: config.maxConcurrentRuns,
    maxQueuedRuns: config.maxQueuedRuns,
    queueTimeoutMs: config.queueTimeoutMs,
    maxFiles: config.maxFiles,
    maxSourceBytes: config.maxSourceBytes,
    maxStdinBytes: config.maxStdinBytes,
    warmPoolSizes: config.warmPoolSizes,
    warmPoolMaxIdleMs: config.warmPoolMaxIdleMs,
    warmPoolRefillConcurrency: config.warmPoolRefillConcurrency,
    scanPolicy: config.scanPolicy,
    scannerAddress: config.scannerAddress,
    scanDeadlineMs: config.scanDeadlineMs,
    catalogPath: config.catalogPath,
    instanceId: config.instanceId,
    audit: config.audit,
    auditAddress: config.auditAddress,
    auditOutputBytes: config.auditOutputBytes,
    spoolFolder: config.spoolFolder,
  };
}
