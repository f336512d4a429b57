// node-media-server v4 ships no types; these declare the parts the ingest uses.
declare module 'node-media-server' {
  export default class NodeMediaServer {
    constructor(config: Record<string, unknown>, configPath?: string);
    on(event: string, listener: (session: unknown) => void): void;
    stop(): Promise<void>;
  }
}

declare module 'node-media-server/src/core/logger.js' {
  const logger: { level: string; log: (message: string, level?: string) => void };
  export default logger;
}

declare module 'node-media-server/src/core/context.js' {
  import type { EventEmitter } from 'node:events';

  const context: {
    eventEmitter: EventEmitter;
    sessions: Map<string, unknown>;
    broadcasts: Map<string, NmsBroadcast>;
  };
  export default context;

  /** The fan-out of one stream path: its publisher and subscribers. */
  export interface NmsBroadcast {
    publisher: unknown;
    postPlay(session: unknown): string | null;
    donePlay(session: unknown): void;
  }
}

declare module 'node-media-server/src/protocol/rtmp.js' {
  /** One message being reassembled from chunks. */
  export interface RtmpPacket {
    header: { fmt: number; cid: number; length: number; type: number };
    payload: Buffer;
  }

  /** node-media-server's RTMP chunk parser; its methods live on the prototype. */
  export default class Rtmp {
    handshakeState: number;
    inPackets: Map<number, RtmpPacket>;
    parserPacket: RtmpPacket;
    packetParse(): void;
    controlHandler(): void;
  }
}

declare module 'node-media-server/src/session/rtmp_session.js' {
  import type { Socket } from 'node:net';
  import type Rtmp from 'node-media-server/src/protocol/rtmp.js';

  /** One RTMP connection as node-media-server handles it. */
  export default class RtmpSession {
    constructor(socket: Socket);
    id: string;
    ip: string;
    socket: Socket;
    rtmp: Rtmp & {
      onConnectCallback: unknown;
      onPlayCallback: () => void;
      onPushCallback: () => void;
      onOutputCallback: unknown;
      onPacketCallback: unknown;
    };
    streamApp: string;
    streamName: string;
    streamPath: string;
    streamQuery: Record<string, string | undefined>;
    videoWidth: number;
    videoHeight: number;
    videoFramerate: number;
    videoDatarate: number;
    isPublisher: boolean;
    broadcast: { publisher: unknown; publishGraceMs: number };
    onConnect: unknown;
    onPlay: () => void;
    onPush: () => void;
    onOutput: unknown;
    onPacket: unknown;
    onData: (data: Buffer) => void;
    onClose: () => void;
    onError: (error: Error) => void;
    close(): void;
  }
}
