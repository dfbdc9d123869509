// The v1 API, one namespace per proto file. Everything under gen/ is written
// by `npm run gen`; this file only names the modules.
export * as auditV1 from './gen/cordon/v1/audit.pb.js';
export * as commonV1 from './gen/cordon/v1/common.pb.js';
export * as executorV1 from './gen/cordon/v1/executor.pb.js';
export * as memoryV1 from './gen/cordon/v1/memory.pb.js';
export * as scannerV1 from './gen/cordon/v1/scanner.pb.js';
export { descriptorSet } from './gen/descriptor-set.js';
