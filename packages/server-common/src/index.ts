export * from './config';
export * from './errors';
export * from './events';
export * from './logger';
export * from './identity';
export * from './serial-queue';
export * from './token-bucket';
export * from './join-token';
