import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A Unix socket that forwards to the real Docker socket. Stopping it drops
 * every connection and refuses new ones, as an executor experiences an
 * engine that goes away, without disturbing the real engine.
 */
export class DockerProxy {
  readonly folder = mkdtempSync(join(tmpdir(), 'cordon-docker-proxy-'));
  readonly socketPath = join(this.folder, 'docker.sock');
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  async start(): Promise<void> {
    // Half-open sockets let the executor end the container's stdin and still read its output.
    const server = createServer({ allowHalfOpen: true }, (client) => {
      const engine = connect({ path: '/var/run/docker.sock', allowHalfOpen: true });
      for (const socket of [client, engine]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      client.pipe(engine);
      engine.pipe(client);
      client.on('close', () => engine.destroy());
      engine.on('close', () => client.destroy());
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(this.socketPath, resolve));
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.sockets.forEach((socket) => socket.destroy());
    await new Promise<void>((resolve) =>
      server === undefined ? resolve() : server.close(() => resolve()),
    );
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.folder, { recursive: true, force: true });
  }
}
