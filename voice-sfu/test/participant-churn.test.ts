import { afterEach, describe, expect, it } from 'vitest';
import { voiceConfig } from '../src/config';
import { VoiceNode } from '../src/voice-node';
import { runParticipantChurn } from './support/churn';
import { quietLogger } from './support/plain-peers';

// The short form of the 10-minute churn scenario of `npm run bench:faults`.

let node: VoiceNode | undefined;

afterEach(() => {
  node?.close();
  node = undefined;
});

describe('participant churn', () => {
  it('participants joining and leaving for 10 s: audio flows throughout, and once all have left every mediasoup object is closed in the pool and in the workers', async () => {
    node = await VoiceNode.start(
      voiceConfig({ numWorkers: 2, rtcBasePort: 0, maxConsumersPerEdge: 20 }),
      quietLogger,
    );
    const result = await runParticipantChurn(node, {
      participants: 24,
      speakers: 4,
      channels: 2,
      durationMs: 10_000,
      cyclesPerSecond: 10,
    });
    const context = JSON.stringify(result);
    expect(result.failures, context).toBe(0);
    // 24 initial joins and about 100 replacements; a loaded machine may manage fewer.
    expect(result.joins, context).toBeGreaterThan(24 + 30);
    expect(result.leaves, context).toBe(result.joins);
    expect(result.peak.consumers, context).toBeGreaterThan(0);
    expect(result.packetsDelivered, context).toBeGreaterThan(0);
    expect(result.after, context).toEqual({
      routers: 0,
      transports: 0,
      producers: 0,
      consumers: 0,
    });
    expect(result.workerRouters, context).toBe(0);
    expect(result.openChannels, context).toBe(0);
  }, 60_000);
});
