import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  credentials,
  loadPackageDefinition,
  makeGenericClientConstructor,
  Metadata,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';

const require = createRequire(import.meta.url);

interface HealthClient extends Client {
  check(
    request: { service: string },
    metadata: Metadata,
    options: { deadline: number },
    callback: (error: ServiceError | null, response: { status: string }) => void,
  ): { on(event: 'status', listener: (status: { metadata: Metadata }) => void): void };
}

/** Returns the health status of a server and the text entries of the check's trailing metadata. */
export async function checkHealthDetails(
  address: string,
): Promise<{ status: string; trailers: Record<string, string> }> {
  const Constructor = makeGenericClientConstructor(healthService, 'Health');
  const client = new Constructor(address, credentials.createInsecure()) as unknown as HealthClient;
  try {
    return await new Promise((resolve, reject) => {
      let healthStatus = '';
      let trailers: Record<string, string> | undefined;
      const settle = (): void => {
        if (healthStatus !== '' && trailers !== undefined)
          resolve({ status: healthStatus, trailers });
      };
      const call = client.check(
        { service: '' },
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (error, response) => {
          if (error !== null) {
            reject(error);
            return;
          }
          healthStatus = response.status;
          settle();
        },
      );
      call.on('status', (callStatus) => {
        const map = callStatus.metadata.getMap();
        trailers = Object.fromEntries(
          Object.entries(map).map(([key, value]) => [
            key,
            Buffer.isBuffer(value) ? value.toString() : value,
          ]),
        );
        settle();
      });
    });
  } finally {
    client.close();
  }
}

/** Returns the grpc.health.v1 status of a service ('' for the whole server). */
export async function checkHealth(address: string, service = ''): Promise<string> {
  const Constructor = makeGenericClientConstructor(healthService, 'Health');
  const client = new Constructor(address, credentials.createInsecure()) as unknown as HealthClient;
  try {
    return await new Promise((resolve, reject) => {
      client.check(
        { service },
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (error, response) => {
          if (error === null) {
            resolve(response.status);
          } else {
            reject(error);
          }
        },
      );
    });
  } finally {
    client.close();
  }
}

interface ReflectionStream {
  write(request: { listServices: string }): void;
  end(): void;
  on(
    event: 'data',
    listener: (response: { listServicesResponse?: { service: { name: string }[] } }) => void,
  ): void;
  on(event: 'error', listener: (error: Error) => void): void;
  on(event: 'end', listener: () => void): void;
}

type ReflectionClient = Client & { serverReflectionInfo(): ReflectionStream };

/** Lists the services a server exposes through grpc.reflection.v1. */
export async function listServicesByReflection(address: string): Promise<string[]> {
  const reflectionRoot = join(
    dirname(require.resolve('@grpc/reflection/package.json')),
    'build/proto',
  );
  const definition = loadSync('grpc/reflection/v1/reflection.proto', {
    includeDirs: [reflectionRoot],
  });
  const grpcObject = loadPackageDefinition(definition) as unknown as {
    grpc: {
      reflection: {
        v1: { ServerReflection: new (address: string, creds: unknown) => ReflectionClient };
      };
    };
  };
  const client = new grpcObject.grpc.reflection.v1.ServerReflection(
    address,
    credentials.createInsecure(),
  );
  try {
    return await new Promise((resolve, reject) => {
      const call = client.serverReflectionInfo();
      const names: string[] = [];
      call.on('data', (response) => {
        names.push(...(response.listServicesResponse?.service.map((entry) => entry.name) ?? []));
        call.end();
      });
      call.on('error', reject);
      call.on('end', () => resolve(names.sort()));
      call.write({ listServices: '' });
    });
  } finally {
    client.close();
  }
}
