import {
  bytesVar,
  ConfigError,
  defaultStatePath,
  formatBytes,
  integerVar,
  stringVar,
  type ConfigValues,
  type KitConfig,
} from '@cordon/service-kit';

const KiB = 1024;
const MiB = 1024 ** 2;

/**
 * Room left in a GetRun response for the timeline records and protobuf
 * framing, besides the files and the two output excerpts.
 */
const GET_RUN_OVERHEAD_BYTES = MiB;

/** Returns the database path used when CORDON_AUDIT_DB_PATH is unset. */
export function defaultDatabasePath(): string {
  return defaultStatePath('audit.db');
}

export const auditConfigSpec = {
  databasePath: stringVar('CORDON_AUDIT_DB_PATH', {
    description: 'SQLite database file of the audit record; its folder is created when missing.',
    default: defaultDatabasePath(),
    pattern: /^\/\S+$/,
    allowed: 'an absolute file path without spaces, such as /var/lib/cordon/audit.db',
  }),
  outputBytes: bytesVar('CORDON_AUDIT_OUTPUT_BYTES', {
    description:
      'Bytes kept from the start of each output excerpt (stdout and stderr each); the rest is cut and the record marks it truncated.',
    default: 64 * KiB,
    min: 0,
    max: 4 * MiB,
  }),
  maxExcerptBytes: bytesVar('CORDON_AUDIT_MAX_EXCERPT_BYTES', {
    description:
      'Largest output excerpt an Append may send; larger ones are rejected, smaller ones are cut to CORDON_AUDIT_OUTPUT_BYTES.',
    default: MiB,
    min: 0,
    max: 64 * MiB,
  }),
  maxFilesBytes: bytesVar('CORDON_AUDIT_MAX_FILES_BYTES', {
    description: 'Largest total size of the files one Append may store.',
    default: 8 * MiB,
    min: 0,
    max: 128 * MiB,
  }),
  maxFiles: integerVar('CORDON_AUDIT_MAX_FILES', {
    description: 'Largest number of files one Append may store.',
    default: 1000,
    min: 0,
    max: 100_000,
  }),
  queryDefaultLimit: integerVar('CORDON_AUDIT_QUERY_DEFAULT_LIMIT', {
    description: 'Records one Query returns when its limit is 0.',
    default: 100,
    min: 1,
    max: 100_000,
  }),
  queryMaxLimit: integerVar('CORDON_AUDIT_QUERY_MAX_LIMIT', {
    description: 'Largest limit a Query may ask for; callers page further with after_seq.',
    default: 1000,
    min: 1,
    max: 100_000,
  }),
};

export type AuditConfig = ConfigValues<typeof auditConfigSpec>;

/** Audit settings after validation, with units in every name. */
export interface AuditOptions {
  /** Absolute path of the SQLite file. Default /var/lib/cordon/audit.db for root. */
  readonly databasePath: string;
  /** Bytes of each output excerpt that are stored. Default 64 KiB. */
  readonly outputBytes: number;
  /** Largest excerpt accepted before cutting. Default 1 MiB. */
  readonly maxExcerptBytes: number;
  /** Largest total size of the files of one Append. Default 8 MiB. */
  readonly maxFilesBytes: number;
  /** Largest number of files of one Append. Default 1000. */
  readonly maxFiles: number;
  /** Records a Query returns when it sets no limit. Default 100. */
  readonly queryDefaultLimit: number;
  /** Largest limit a Query may set. Default 1000. */
  readonly queryMaxLimit: number;
}

/**
 * Checks the settings against each other and against the kit's message
 * limits, so that every record the service accepts can also be read back.
 * Throws a one-line ConfigError when they disagree.
 */
export function compileAuditOptions(config: AuditConfig, kit: KitConfig): AuditOptions {
  if (config.maxExcerptBytes < config.outputBytes) {
    throw new ConfigError(
      'CORDON_AUDIT_MAX_EXCERPT_BYTES',
      `invalid configuration: CORDON_AUDIT_MAX_EXCERPT_BYTES (${formatBytes(config.maxExcerptBytes)}) is below CORDON_AUDIT_OUTPUT_BYTES (${formatBytes(config.outputBytes)}); raise the maximum or lower the kept bytes`,
    );
  }
  if (config.queryDefaultLimit > config.queryMaxLimit) {
    throw new ConfigError(
      'CORDON_AUDIT_QUERY_DEFAULT_LIMIT',
      `invalid configuration: CORDON_AUDIT_QUERY_DEFAULT_LIMIT (${config.queryDefaultLimit}) is above CORDON_AUDIT_QUERY_MAX_LIMIT (${config.queryMaxLimit}); lower the default or raise the maximum`,
    );
  }

  const getRunBytes = config.maxFilesBytes + 2 * config.outputBytes + GET_RUN_OVERHEAD_BYTES;
  if (getRunBytes > kit.maxSendMessageBytes) {
    throw new ConfigError(
      'CORDON_AUDIT_MAX_FILES_BYTES',
      `invalid configuration: a GetRun response may need ${formatBytes(getRunBytes)} (CORDON_AUDIT_MAX_FILES_BYTES + 2 × CORDON_AUDIT_OUTPUT_BYTES + 1MiB), above CORDON_GRPC_MAX_SEND_MESSAGE_BYTES (${formatBytes(kit.maxSendMessageBytes)}); lower the audit sizes or raise the message limit`,
    );
  }

  return {
    databasePath: config.databasePath,
    outputBytes: config.outputBytes,
    maxExcerptBytes: config.maxExcerptBytes,
    maxFilesBytes: config.maxFilesBytes,
    maxFiles: config.maxFiles,
    queryDefaultLimit: config.queryDefaultLimit,
    queryMaxLimit: config.queryMaxLimit,
  };
}
