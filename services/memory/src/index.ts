export {
  AUDITING_OFF,
  GrpcAuditSink,
  type AuditSink,
  type MemoryAuditEvent,
} from './audit-sink.js';
export { callerAgentId } from './caller.js';
export {
  compileMemoryOptions,
  memoryConfigSpec,
  type MemoryLimits,
  type MemoryOptions,
} from './memory-options.js';
export { createMemoryService, type MemoryServiceDependencies } from './memory-service.js';
export type { MemoryStore } from './memory-store.js';
export { openStores, StoreRouter } from './store-router.js';
