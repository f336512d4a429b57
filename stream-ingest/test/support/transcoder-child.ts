import { createLogger } from '@hearth/server-common';
import { Transcoder } from '../../src/transcoder';

// A process that runs one Transcoder on a file and prints its ffmpeg's pid once it encodes,
// for tests that kill this process and watch what happens to ffmpeg.
const [input, workDir] = process.argv.slice(2);
if (!input || !workDir) throw new Error('usage: transcoder-child <input> <workDir>');
const transcoder = new Transcoder({
  input,
  workDir,
  source: { width: 1280, height: 720, fps: 30 },
  segmentSeconds: 2,
  passthrough: false,
  logger: createLogger('transcoder-child', { level: 'silent' }),
});
await transcoder.start();
process.stdout.write(`${transcoder.pid}\n`);
