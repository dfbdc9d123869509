// A MemoryService whose handlers store nothing, served through the same
// service kit (runService: logging, tracing, health) as the real one. The
// benchmark runs it to show what the gRPC layer alone costs on this machine.
import { memoryV1 } from '@cordon/proto';
import { defineService, runService } from '@cordon/service-kit';

const value = Buffer.alloc(100, 'v');

await runService({
  name: 'memory',
  config: {},
  create: () =>
    Promise.resolve({
      services: [
        defineService(
          memoryV1.MemoryServiceService,
          {
            put: () => Promise.resolve({ version: 1 }),
            get: () => Promise.resolve({ value, contentType: '', version: 1 }),
            delete: () => Promise.resolve({ deleted: false }),
            list: () => Promise.resolve({ keys: [], nextPageToken: '' }),
          },
          {
            // The same roles as the memory service, so the kit checks tokens as it does there.
            roles: {
              put: ['agent', 'service'],
              get: ['agent', 'service'],
              delete: ['agent', 'service'],
              list: ['agent', 'service'],
            },
          },
        ),
      ],
    }),
});
