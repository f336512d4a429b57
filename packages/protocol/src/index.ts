export * from './common';
export * from './errors';
export * from './rest';
export * from './rtp';
export * from './signaling';
export * from './streams';
export * from './nodes';
