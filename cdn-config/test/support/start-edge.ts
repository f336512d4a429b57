// Starts an nginx edge, prints its process id and waits: the owner process of a lifetime test.
import { startNginxEdge } from '../../src/edge';

const edge = await startNginxEdge({ originUrl: 'http://127.0.0.1:9', bucket: 'hearth-test' });
process.stdout.write(`${edge.pid}\n`);
setInterval(() => undefined, 60_000);
