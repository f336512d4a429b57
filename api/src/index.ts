export * from './app';
export * from './auth';
export * from './channel-directory';
export * from './config';
export * from './platform';
