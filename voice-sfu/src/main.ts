// A standalone voice-sfu node: `node --import tsx voice-sfu/src/main.ts`. It serves signaling for
// the channels the api places on it and registers with the api at VOICE_API_URL.
import { Registry, collectDefaultMetrics } from 'prom-client';
import {
  JoinTokenVerifier,
  connectControlSocket,
  createLogger,
  loadAllConfigs,
  runService,
} from '@hearth/server-common';
import { loadVoiceConfig, loadVoiceServerConfig } from './config';
import { NodeAgent } from './node-agent';
import { startVoiceServer } from './server';
import { VoiceNode } from './voice-node';

async function main(): Promise<{ onStop: (signal: NodeJS.Signals) => Promise<void> }> {
  const [voiceConfig, serverConfig] = loadAllConfigs(
    process.env,
    loadVoiceConfig,
    loadVoiceServerConfig,
  );
  const logger = createLogger('voice-sfu', { level: serverConfig.logLevel }).child({
    node: serverConfig.nodeId,
  });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const node = await VoiceNode.start(voiceConfig, logger, registry);
  const agent = new NodeAgent({
    node,
    nodeId: serverConfig.nodeId,
    tokens: new JoinTokenVerifier(),
    signalingUrl: serverConfig.publicUrl,
    limits: {
      maxParticipants: serverConfig.maxParticipants,
      maxConsumers: serverConfig.maxConsumers,
    },
    heartbeatMs: serverConfig.heartbeatMs,
  });
  const server = await startVoiceServer({
    node,
    agent,
    host: serverConfig.host,
    port: serverConfig.port,
  }).catch((error: unknown) => {
    node.close();
    throw error;
  });
  const control = connectControlSocket({
    agent,
    apiUrl: serverConfig.apiUrl,
    clusterSecret: serverConfig.clusterSecret,
    logger,
  });
  logger.info({ port: server.port, publicUrl: serverConfig.publicUrl }, 'voice node listening');

  const shutdown = async (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    setTimeout(() => process.exit(0), 5000).unref();
    control.close();
    node.close();
    await server.close();
    process.exit(0);
  };
  return { onStop: shutdown };
}

runService(main);
