// Supervises a sleeping child, prints its process id and waits: the owner in a lifetime test.
import { pino } from 'pino';
import { SupervisedProcess } from '../../src/supervised-process';

const child = new SupervisedProcess({
  name: 'sleeper',
  command: process.execPath,
  args: ['-e', "process.send('ready'); setInterval(() => {}, 1000)"],
  env: {},
  logger: pino({ level: 'silent' }),
});
child.events.once('ready', (pid) => process.stdout.write(`${pid}\n`));
child.start();
