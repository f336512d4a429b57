// node-media-server v4 ships no types; these declare the parts the ingest uses.
declare module 'node-media-server' {
  import type { Server } from 'node:net';

  export default class NodeMediaServer {
    constructor(config: Record<string, unknown>, configPath?: string);
    rtmpServer: { run(): void; tcpServer?: Server; tlsServer?: Server };
    on(event: string, listener: (session: unknown) => void): void;
    run(): Promise<void>;
    stop(): Promise<void>;
  }
}

declare module 'node-media-server/src/core/logger.js' {
  const logger: { level: string; log: (message: string, level?: string) => void };
  export default logger;
}

declare module 'node-media-server/src/core/context.js' {
  import type { EventEmitter } from 'node:events';

  const context: { eventEmitter: EventEmitter };
  export default context;
}
