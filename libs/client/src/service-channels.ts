import {
  credentials,
  makeGenericClientConstructor,
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type ClientUnaryCall,
} from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { auditV1, executorV1, memoryV1, scannerV1 } from '@cordon/proto';
import type { ServiceName } from './client-error.js';
import type { ResolvedOptions } from './client-options.js';

/** Method shape of the health client that grpc-js builds from grpc.health.v1. */
export interface HealthClient extends Client {
  check: (...args: unknown[]) => ClientUnaryCall;
}

interface ServiceClients {
  executor: executorV1.ExecutorServiceClient;
  scanner: scannerV1.ScannerServiceClient;
  memory: memoryV1.MemoryServiceClient;
  audit: auditV1.AuditServiceClient;
}

const HealthClientConstructor = makeGenericClientConstructor(healthServiceDefinition, 'Health');

/**
 * One gRPC channel per service, opened on first use. Each service's client
 * and its health client share the channel's address and credentials.
 */
export class ServiceChannels {
  private readonly clients = new Map<string, Client>();
  private readonly channelCredentials: ChannelCredentials;
  private readonly channelOptions: ClientOptions;

  constructor(private readonly options: ResolvedOptions) {
    const tls = options.tls;
    this.channelCredentials =
      tls === undefined
        ? credentials.createInsecure()
        : credentials.createSsl(tls.ca, tls.key, tls.cert);
    this.channelOptions = {
      'grpc.max_receive_message_length': options.maxMessageBytes,
      'grpc.max_send_message_length': options.maxMessageBytes,
      'grpc.keepalive_time_ms': 30_000,
    };
  }

  address(service: ServiceName): string {
    return this.options.addresses[service];
  }

  service<S extends ServiceName>(service: S): ServiceClients[S] {
    return this.open(service, () => {
      const address = this.address(service);
      switch (service) {
        case 'executor':
          return new executorV1.ExecutorServiceClient(
            address,
            this.channelCredentials,
            this.channelOptions,
          );
        case 'scanner':
          return new scannerV1.ScannerServiceClient(
            address,
            this.channelCredentials,
            this.channelOptions,
          );
        case 'memory':
          return new memoryV1.MemoryServiceClient(
            address,
            this.channelCredentials,
            this.channelOptions,
          );
        case 'audit':
          return new auditV1.AuditServiceClient(
            address,
            this.channelCredentials,
            this.channelOptions,
          );
      }
      throw new Error(`unknown service ${String(service)}`);
    }) as ServiceClients[S];
  }

  health(service: ServiceName): HealthClient {
    return this.open(`${service}/health`, () => {
      return new HealthClientConstructor(
        this.address(service),
        this.channelCredentials,
        this.channelOptions,
      );
    }) as HealthClient;
  }

  private open(key: string, create: () => Client): Client {
    let client = this.clients.get(key);
    if (client === undefined) {
      client = create();
      this.clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) {
      client.close();
    }
    this.clients.clear();
  }
}
