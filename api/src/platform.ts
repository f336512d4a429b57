import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Registry } from 'prom-client';
import {
  ConfigError,
  JoinTokenIssuer,
  JoinTokenVerifier,
  type Logger,
} from '@hearth/server-common';
import {
  IngestAgent,
  IngestNode,
  type IngestConfig,
  type ObjectStorage,
} from '@hearth/stream-ingest';
import { NodeAgent, VoiceNode, type VoiceConfig } from '@hearth/voice-sfu';
import { AccessTokens } from './accounts/access-tokens';
import { AccountService } from './accounts/account-service';
import { DEFAULT_LOGIN_THROTTLE, LoginThrottle } from './accounts/login-throttle';
import { createApp, type ApiApp } from './app';
import { Authenticator } from './auth';
import { databaseTimeouts, type ApiConfig } from './config';
import { migrate } from './db/migrations';
import { openDatabase } from './db/open-database';
import type { SqlClient } from './db/sql-client';
import { createStores, type Stores } from './db/stores';
import { createPlacementService, type PlacementService } from './nodes/placement-service';
import { IngestMessageHandler } from './streams/ingest-messages';
import {
  InMemoryLiveStreamStore,
  RedisLiveStreamStore,
  type LiveStreamStore,
} from './streams/live-stream-store';
import { StreamService, type StreamUrls } from './streams/stream-service';
import { ShareEvents } from './voice/share-events';
import { ShareBridges } from './handoff/share-bridges';
import { NodeHub } from './voice/node-hub';
import { InMemoryPresenceStore, RedisPresenceStore, type PresenceStore } from './voice/presence';
import {
  InMemoryReservationStore,
  JoinReservations,
  RedisReservationStore,
} from './voice/reservations';

// In-process nodes report their load at most this often, and at least three times per node
// timeout, as separate nodes do with the defaults (1 s heartbeats, 3 s timeout): a heartbeat a
// little late must not get a live node marked down.
const EMBEDDED_HEARTBEAT_MS = 1000;
const HEARTBEATS_PER_NODE_TIMEOUT = 3;

/** The embedded platform: in-process voice and ingest nodes behind the api. */
export interface Platform {
  /** The api, not listening yet. */
  app: ApiApp;
  /** The voice node running in this process, if the config asks for one. */
  voice: VoiceNode | undefined;
  /** Stream keys and live streams. */
  streams: StreamService;
  /** The ingest node, when one runs in this process. */
  ingest: IngestNode | undefined;
  /** The migrated database. */
  database: SqlClient;
  /** Every store on it, including the voice session history (`stores.sessions`). */
  stores: Stores;
  /** Node registry and placement. */
  placement: PlacementService;
  /**
   * Ends live streams cleanly, stops the nodes and closes the database; the caller closes the
   * HTTP server.
   */
  close(): Promise<void>;
}

/**
 * Opens and migrates the database, starts the nodes and builds the api around them; the caller
 * listens and shuts down. The database is PostgreSQL at `config.databaseUrl` when set, otherwise
 * PGlite in `<dataDir>/pglite`, unless the caller hands one over in `database`.
 */
export async function startPlatform(options: {
  config: ApiConfig;
  voiceConfig: VoiceConfig;
  logger: Logger;
  registry: Registry;
  streamUrls: StreamUrls;
  /** Runs an ingest node in this process, writing to this storage. */
  ingest?: { config: IngestConfig; storage: ObjectStorage };
  /** An open database to use instead of the configured one; the platform migrates and closes it. */
  database?: SqlClient;
}): Promise<Platform> {
  const { config, logger, registry } = options;
  if (config.jwtSecret === undefined) {
    await options.database?.close();
    throw new ConfigError('invalid configuration: API_JWT_SECRET is not set');
  }
  // Everything started so far, stopped in reverse order if a later step fails.
  const started: (() => unknown)[] = [];
  const stopStarted = async () => {
    for (const stop of started.splice(0).reverse()) await stop();
  };
  const database =
    options.database ??
    (await openDatabase({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      logger,
      timeouts: databaseTimeouts(config),
    }));
  started.push(() => database.close());
  let placement: PlacementService;
  let nodeHub: NodeHub;
  let presence: PresenceStore;
  let voice: VoiceNode | undefined;
  let localVoiceAgent: NodeAgent | undefined;
  let ingest: IngestNode | undefined;
  let streams: StreamService;
  let shares: ShareEvents;
  let shareBridges: ShareBridges;
  let stores: Stores;
  let reservations: JoinReservations;
  // Voice nodes in other processes need the secret the operator configured; a node running only
  // in this process can do with one that lives as long as the process.
  const clusterSecret = config.clusterSecret ?? randomBytes(32).toString('hex');
  // Join tokens are signed with a key only api instances can derive; nodes get its public half.
  const joinTokens = new JoinTokenIssuer(config.jwtSecret, config.joinTokenTtlSeconds);
  try {
    const applied = await migrate(database);
    if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
    stores = createStores(database);
    placement = createPlacementService({
      redisUrl: config.redisUrl,
      logger,
      nodeTimeoutMs: config.nodeTimeoutMs,
      sweepIntervalMs: config.sweepIntervalMs,
    });
    started.push(() => placement.stop());
    await placement.start();
    presence = config.redisUrl
      ? new RedisPresenceStore({ url: config.redisUrl })
      : new InMemoryPresenceStore();
    const opened = presence;
    started.push(() => opened.close());
    const liveStreams: LiveStreamStore = config.redisUrl
      ? new RedisLiveStreamStore({ url: config.redisUrl, logger })
      : new InMemoryLiveStreamStore();
    started.push(() => liveStreams.close());
    const service = new StreamService({
      keys: stores.streamKeys,
      channels: stores.channels,
      history: stores.streamHistory,
      store: liveStreams,
      bus: placement.bus,
      urls: options.streamUrls,
      playbackSigningSecret: config.playbackSigningSecret,
      logger,
    });
    streams = service;
    await service.start();
    started.push(() => service.close());
    const shareEvents = new ShareEvents({ bus: placement.bus, logger });
    shares = shareEvents;
    await shareEvents.start();
    started.push(() => shareEvents.close());
    nodeHub = await NodeHub.start({
      placement,
      bus: placement.bus,
      logger,
      clusterSecret,
      sessions: stores.sessions,
      presence,
      ingest: new IngestMessageHandler({ streams: service, logger }),
      joinTokenKey: joinTokens.publicKey,
    });
    const hub = nodeHub;
    started.push(() => hub.close());
    const bridges = new ShareBridges({
      deps: {
        sendToNode: (nodeId, message) => hub.sendToNode(nodeId, message),
        nodes: () => placement.nodes(),
        channelSettings: (channel) => stores.channels.get(channel),
        claimBridge: (channel, peerId, nodes) => service.claimBridge(channel, peerId, nodes),
        viewers: (channel) => service.viewers(channel),
        isLive: (streamId) => service.isLive(streamId),
        routeShareAudience: (streamId, route) => service.routeShareAudience(streamId, route),
      },
      settings: {
        viewers: config.handoffViewers,
        prewarm: config.handoffPrewarm,
        release: config.handoffRelease,
      },
      bus: placement.bus,
      logger,
      // Security by default: a share crosses the network encrypted.
      srtp: () => true,
    });
    shareBridges = bridges;
    await bridges.start();
    started.push(() => bridges.close());
    const { moderation } = stores;
    const placed = placement;
    const seats = new JoinReservations({
      store: config.redisUrl
        ? new RedisReservationStore({ url: config.redisUrl })
        : new InMemoryReservationStore(),
      releaseSeat: (nodeId) => placed.releaseSeat(nodeId),
    });
    reservations = seats;
    started.push(() => seats.close());
    hub.observe({
      tokenAdmitted: (tokenId) => {
        seats.settle(tokenId).catch((error: unknown) => {
          logger.warn({ err: error }, 'settling a join reservation failed');
        });
      },
      // An account's server mute outlives its session: its next join starts muted.
      serverMuteChanged: (channel, userId, muted) => {
        moderation.setServerMuted(channel, userId, muted).catch((error: unknown) => {
          logger.error({ err: error, channel }, 'recording a server mute failed');
        });
      },
      shareChanged: (event, nodeId) => {
        shareEvents.announce(event);
        bridges.shareChanged(event, nodeId);
      },
      audienceChanged: (nodeId, channel, spectators) => {
        bridges.audienceChanged(nodeId, channel, spectators).catch((error: unknown) => {
          logger.warn({ err: error, channel }, 'a spectator count was not passed on');
        });
      },
      bridgeClosed: (bridgeId, reason) => {
        bridges.nodeClosedBridge(bridgeId, reason).catch((error: unknown) => {
          logger.error({ err: error }, 'a bridge close was not passed on');
        });
      },
    });
    // A rotation through this instance reaches the ingest node wherever it is connected.
    service.events.on('keyRevoked', (keyId) => {
      hub.revokeKey(keyId).catch((error: unknown) => {
        logger.error({ err: error }, 'key revocation not sent to the ingest nodes');
      });
    });
    // The handoff policy reads the channel's stream and watch pages.
    service.events.on('streamLive', (stream) => bridges.reconsider(stream.channel));
    service.events.on('streamEnded', (stream) => bridges.streamEnded(stream.id, stream.channel));
    service.events.on('viewerCount', (channel) => bridges.reconsider(channel));
    placement.events.on('nodeDown', ({ nodeId }) => bridges.nodeGone(nodeId));
    placement.events.on('nodeDown', ({ nodeId, at }) => {
      service.nodeGone(nodeId, new Date(at)).catch((error: unknown) => {
        logger.error({ err: error, node: nodeId }, 'ending the streams of a gone node failed');
      });
    });
    const embeddedHeartbeatMs = Math.min(
      EMBEDDED_HEARTBEAT_MS,
      Math.floor(config.nodeTimeoutMs / HEARTBEATS_PER_NODE_TIMEOUT),
    );
    if (config.embeddedVoice) {
      const node = await VoiceNode.start(
        options.voiceConfig,
        logger.child({ component: 'voice-sfu' }),
        registry,
      );
      voice = node;
      started.push(() => node.close());
      const agent = new NodeAgent({
        node,
        nodeId: `embedded-${os.hostname()}`,
        tokens: new JoinTokenVerifier(),
        limits: {},
        heartbeatMs: embeddedHeartbeatMs,
      });
      localVoiceAgent = agent;
      started.push(() => agent.close());
      agent.attach(nodeHub.attachLocal((message) => agent.receive(message)));
    }
    if (options.ingest) {
      // An ingest node in this process (tests): it talks to the hub exactly as a node process
      // does over its control socket.
      const agent = new IngestAgent({
        nodeId: `ingest-in-process-${os.hostname()}`,
        rtmpUrl: options.streamUrls.rtmpUrl,
        limits: {},
        heartbeatMs: embeddedHeartbeatMs,
        logger,
      });
      agent.attach(hub.attachLocal((message) => agent.receive(message)));
      started.push(() => agent.close());
      const running = await IngestNode.start({
        config: options.ingest.config,
        storage: options.ingest.storage,
        controlPlane: agent,
        logger,
        registry,
      });
      ingest = running;
      started.push(() => running.stop());
      agent.bind(running);
    }
  } catch (error) {
    await stopStarted();
    throw error;
  }
  const { channels } = stores;
  const accessTokens = new AccessTokens({
    secret: config.jwtSecret,
    ttlSeconds: config.accessTokenTtlSeconds,
    guestAccess: config.guestAccess,
    guestGrants: config.guestGrants,
  });
  const app = createApp({
    config,
    logger,
    voice,
    localVoiceAgent,
    placement,
    nodeHub,
    presence,
    joinTokens,
    registry,
    channels,
    streams,
    shares,
    bridges: shareBridges,
    authenticator: new Authenticator({
      adminToken: config.adminToken,
      accessTokens,
    }),
    accounts: new AccountService({
      users: stores.users,
      memberships: stores.memberships,
      refreshTokens: stores.refreshTokens,
      accessTokens,
      throttle: new LoginThrottle(DEFAULT_LOGIN_THROTTLE),
      userGrants: config.userGrants,
      refreshTtlSeconds: config.refreshTokenTtlSeconds,
      registration: config.registration,
      logger,
    }),
    users: stores.users,
    memberships: stores.memberships,
    sessions: stores.sessions,
    moderation: stores.moderation,
    reservations,
  });
  let closed = false;
  return {
    app,
    voice,
    streams,
    ingest,
    database,
    stores,
    placement,
    async close() {
      if (closed) return;
      closed = true;
      // Live streams end and their history is written before the database goes.
      await ingest?.stop();
      await stopStarted();
    },
  };
}
