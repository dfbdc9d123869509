import { runService } from '@cordon/service-kit';
import { AUDITING_OFF, GrpcAuditSink } from './audit-sink.js';
import { ScanEngine } from './scan-engine.js';
import { ScanPool } from './scan-pool.js';
import { compileScannerOptions, scannerConfigSpec } from './scanner-options.js';
import { createScannerService } from './scanner-service.js';

await runService({
  name: 'scanner',
  config: scannerConfigSpec,
  create: async ({ config, kit, logger }) => {
    const options = compileScannerOptions(config, kit);
    const engine = await ScanEngine.create(options.rulesDir);
    engine.compileAll();
    const pool = await ScanPool.start({
      size: options.workers,
      rulesDir: options.rulesDir,
      logger,
    });
    const audit =
      options.auditAddress === undefined
        ? AUDITING_OFF
        : new GrpcAuditSink('scanner', options.auditAddress, logger);
    if (options.auditAddress === undefined) {
      logger.warn('auditing is off: set CORDON_AUDIT_ADDRESS to record every scan');
    }

    logger.info(
      {
        rules: engine.rules.length,
        rules_version: engine.rulesVersion,
        engine_version: engine.engineVersion,
        audit_address: options.auditAddress ?? null,
        max_files: options.limits.maxFiles,
        max_file_bytes: options.limits.maxFileBytes,
        max_total_bytes: options.limits.maxTotalBytes,
        scan_timeout_ms: options.limits.scanTimeoutMs,
        workers: pool.size,
      },
      'scanner ready',
    );

    return {
      services: [createScannerService({ engine, pool, audit, limits: options.limits })],
      close: async () => {
        await pool.close();
        await audit.close();
      },
    };
  },
});
