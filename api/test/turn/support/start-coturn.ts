// Starts coturn, prints its process id and folder and waits: the owner process of a lifetime test.
import { createLogger } from '@hearth/server-common';
import { CoturnProcess } from '../../../src/turn/coturn-process';

const coturn = await CoturnProcess.start(
  { listenIp: '127.0.0.1', realm: 'hearth-test', secret: 'lifetime-test-secret-0123456789abcdef' },
  createLogger('start-coturn', { level: 'silent' }),
);
process.stdout.write(`${coturn.pid} ${coturn.files.directory}\n`);
setInterval(() => undefined, 60_000);
