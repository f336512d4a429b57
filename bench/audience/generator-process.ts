// The load generator's own process (forked by bench/hls-audience.ts), so that its requests do
// not slow the api, the ingest node and s3rver in the benchmark's process, and its CPU can be
// told apart. It reads its AudienceConfig as JSON from argv, sends AudienceMessages over IPC and
// exits once it has sent the result, or at once when the benchmark goes away.
import { runAudience, type AudienceConfig, type AudienceMessage } from './audience';

const exitWithBenchmark = () => process.exit(1);
process.on('disconnect', exitWithBenchmark);
const send = (message: AudienceMessage) => process.send?.(message);
const config = JSON.parse(process.argv[2] ?? '{}') as AudienceConfig;
const result = await runAudience(config, send);
process.off('disconnect', exitWithBenchmark);
process.send?.({ type: 'result', result } satisfies AudienceMessage, () => process.exit(0));
