import { availableParallelism } from 'node:os';
import {
  addressVar,
  bytesVar,
  ConfigError,
  durationMsVar,
  formatBytes,
  integerVar,
  stringVar,
  type ConfigValues,
  type KitConfig,
} from '@cordon/service-kit';

const KiB = 1024;
const MiB = 1024 ** 2;

/** Room in a Scan request for everything besides file contents. */
const MESSAGE_OVERHEAD_BYTES = 64 * KiB;

export const scannerConfigSpec = {
  maxFiles: integerVar('CORDON_SCANNER_MAX_FILES', {
    description: 'Most files one Scan request may carry.',
    default: 100,
    min: 1,
    max: 10_000,
  }),
  maxFileBytes: bytesVar('CORDON_SCANNER_MAX_FILE_BYTES', {
    description: 'Largest single file a Scan accepts.',
    default: MiB,
    min: 1,
    max: 64 * MiB,
  }),
  maxTotalBytes: bytesVar('CORDON_SCANNER_MAX_TOTAL_BYTES', {
    description: 'Largest total size of the files of one Scan.',
    default: 8 * MiB,
    min: 1,
    max: 256 * MiB,
  }),
  scanTimeoutMs: durationMsVar('CORDON_SCANNER_SCAN_TIMEOUT_MS', {
    description:
      'Longest time one Scan may parse and match before it fails with DEADLINE_EXCEEDED.',
    default: 10_000,
    min: 100,
    max: 600_000,
  }),
  maxFindings: integerVar('CORDON_SCANNER_MAX_FINDINGS', {
    description:
      'Most findings one report holds; past this an INFO finding says how many were left out.',
    default: 1_000,
    min: 1,
    max: 100_000,
  }),
  workers: integerVar('CORDON_SCANNER_WORKERS', {
    description: 'Worker threads that parse and match; a scan is split across the idle ones.',
    default: Math.min(4, availableParallelism()),
    min: 1,
    max: 64,
  }),
  rulesDir: stringVar('CORDON_SCANNER_RULES_DIR', {
    description: 'Folder of rule files (*.yaml); empty uses the rules shipped with the scanner.',
    default: '',
    pattern: /^\/\S+$/,
    allowed: 'an absolute folder path without spaces',
  }),
  auditAddress: addressVar('CORDON_AUDIT_ADDRESS', {
    description:
      'Audit service that receives a scan.completed record per scan; unset turns auditing off.',
    default: '',
  }),
};

export type ScannerConfig = ConfigValues<typeof scannerConfigSpec>;

/** Per-request limits of the scanner. */
export interface ScanLimits {
  /** Files per request. Default 100. */
  readonly maxFiles: number;
  /** Bytes per file. Default 1 MiB. */
  readonly maxFileBytes: number;
  /** Bytes of all files of a request. Default 8 MiB. */
  readonly maxTotalBytes: number;
  /** Time one scan may take. Default 10 s. */
  readonly scanTimeoutMs: number;
  /** Findings per report. Default 1000. */
  readonly maxFindings: number;
}

/** Scanner settings after validation. */
export interface ScannerOptions {
  readonly limits: ScanLimits;
  /** Worker threads. Default: one per core, at most 4. */
  readonly workers: number;
  /** Rule folder; undefined uses the shipped rules. */
  readonly rulesDir: string | undefined;
  /** Audit service address; undefined turns auditing off. */
  readonly auditAddress: string | undefined;
}

/** Checks the limits against each other and the gRPC message limit; throws a one-line ConfigError. */
export function compileScannerOptions(config: ScannerConfig, kit: KitConfig): ScannerOptions {
  if (config.maxFileBytes > config.maxTotalBytes) {
    throw new ConfigError(
      'CORDON_SCANNER_MAX_FILE_BYTES',
      `invalid configuration: CORDON_SCANNER_MAX_FILE_BYTES (${formatBytes(config.maxFileBytes)}) is above CORDON_SCANNER_MAX_TOTAL_BYTES (${formatBytes(config.maxTotalBytes)}); lower the first or raise the second`,
    );
  }
  const requestBytes = config.maxTotalBytes + MESSAGE_OVERHEAD_BYTES;
  if (requestBytes > kit.maxReceiveMessageBytes) {
    throw new ConfigError(
      'CORDON_SCANNER_MAX_TOTAL_BYTES',
      `invalid configuration: a Scan of CORDON_SCANNER_MAX_TOTAL_BYTES (${formatBytes(config.maxTotalBytes)}) plus 64KiB does not fit the gRPC message limit ${formatBytes(kit.maxReceiveMessageBytes)}; lower CORDON_SCANNER_MAX_TOTAL_BYTES or raise CORDON_GRPC_MAX_RECEIVE_MESSAGE_BYTES`,
    );
  }
  return {
    limits: {
      maxFiles: config.maxFiles,
      maxFileBytes: config.maxFileBytes,
      maxTotalBytes: config.maxTotalBytes,
      scanTimeoutMs: config.scanTimeoutMs,
      maxFindings: config.maxFindings,
    },
    workers: config.workers,
    rulesDir: config.rulesDir === '' ? undefined : config.rulesDir,
    auditAddress: config.auditAddress === '' ? undefined : config.auditAddress,
  };
}
