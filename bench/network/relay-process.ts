// The impairment relays' own process (forked by bench/network/relays.ts), so that the benchmark's
// own work (the api, draining the pages, analysis) never holds a packet back: a stall of the
// benchmark's event loop would otherwise show up as concealment on both pages at once. It reads
// its RelayProcessConfig as JSON from argv, answers RelayRequests over IPC, and exits when the
// benchmark closes it or goes away.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { totalDropped, UdpImpairmentRelay } from '../../e2e/support/impairment';
import type { RelayProcessConfig, RelayReply, RelayRequest } from './relays';

const config = JSON.parse(process.argv[2] ?? '{}') as RelayProcessConfig;
const relays: UdpImpairmentRelay[] = [];
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();

const send = (reply: RelayReply) => process.send?.(reply);
const stop = async (code: number) => {
  for (const relay of relays) await relay.close();
  process.exit(code);
};
process.on('disconnect', () => void stop(1));

try {
  for (const [index, port] of config.ports.entries()) {
    relays.push(
      await UdpImpairmentRelay.start({
        target: { host: config.targetHost, port },
        listenHost: config.listenHost,
        listenPort: port,
        seed: config.seed + index,
      }),
    );
  }
} catch (error) {
  send({ type: 'failed', message: String(error) });
  await stop(1);
}

process.on('message', (request: RelayRequest) => {
  if (request.type === 'close') {
    void stop(0);
    return;
  }
  if (request.type === 'set') {
    for (const relay of relays) relay.set(request.patch);
    loopDelay.reset();
  }
  let forwarded = 0;
  let dropped = 0;
  for (const relay of relays) {
    const stats = relay.stats();
    for (const direction of [stats.upstream, stats.downstream]) {
      forwarded += direction.packetsForwarded;
      dropped += totalDropped(direction);
    }
  }
  send({
    type: 'reply',
    id: request.id,
    at: performance.timeOrigin + performance.now(),
    forwarded,
    dropped,
    loopDelayMaxMs: loopDelay.max / 1e6,
  });
});
send({ type: 'ready' });
