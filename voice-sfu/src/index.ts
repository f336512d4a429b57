export * from './channel';
export * from './channel-manager';
export * from './config';
export * from './media-codecs';
export * from './metrics';
export type { PeerSink } from './peer';
export * from './signaling-session';
export * from './voice-node';
export * from './worker-pool';
