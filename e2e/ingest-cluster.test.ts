import type { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { NginxProcess } from '@hearth/cdn-config';
import { operator } from '../api/test/support/accounts';
import type { TestApi } from '../api/test/support/server';
import { TEST_BUCKET, type TestS3Server } from '../stream-ingest/test/support/s3rver';
import { ingestNodes, liveStreams, startIngestCluster } from './support/ingest-cluster';
import { exited, publishLikeObs } from './support/obs';
import { transcoderPids } from './support/transcoders';
import { eventually } from './support/wait';

// The operator token: guests never hold moderate or stream.
const operatorHeaders = operator();

const cleanups: (() => Promise<unknown>)[] = [];
const publishers: ChildProcess[] = [];

afterEach(async () => {
  for (const publisher of publishers.splice(0)) publisher.kill('SIGKILL');
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const startCluster = () => startIngestCluster(cleanups);

async function playlist(s3: TestS3Server, key: string): Promise<string> {
  const response = await fetch(`${s3.endpoint}/${TEST_BUCKET}/${key}`);
  return response.ok ? response.text() : '';
}

function publish(balancer: NginxProcess, streamKey: string, seconds = 40): ChildProcess {
  const publisher = publishLikeObs({
    url: `rtmp://127.0.0.1:${balancer.layout.port}/live/${streamKey}`,
    seconds,
    width: 640,
    height: 360,
  });
  publishers.push(publisher);
  return publisher;
}

describe('ingest nodes behind a TCP balancer, with two api instances on Redis', () => {
  it('any node takes any key; both instances list the same streams; a rotation through either instance ends the stream on its node; SIGTERM ends streams with ENDLIST and deregisters', async () => {
    const { apis, nodes, balancer, s3 } = await startCluster();
    const [first, second] = apis;
    const show = await first.streams.createKey('show');
    const other = await second.streams.createKey('other');
    const showPublisher = publish(balancer, show.streamKey);
    await eventually(
      async () => (await liveStreams(second)).some((s) => s.state === 'live'),
      25_000,
      'the first stream live',
    );
    publish(balancer, other.streamKey);
    await eventually(
      async () => (await liveStreams(first)).filter((s) => s.state === 'live').length === 2,
      25_000,
      'both streams live',
    );
    // least_conn sent the second publisher to the other node: each node runs one stream.
    await eventually(
      async () => (await ingestNodes(first)).every((node) => node.load.streams === 1),
      5000,
      'one stream per node',
    );
    const sorted = async (api: TestApi) =>
      (await liveStreams(api)).sort((a, b) => a.channel.localeCompare(b.channel));
    expect(await sorted(first)).toEqual(await sorted(second));

    // Rotated through the second instance: the stream ends wherever it is ingested.
    const rotated = await fetch(`${second.baseUrl}/api/channels/show/stream-key/rotate`, {
      method: 'POST',
      headers: operatorHeaders,
    });
    expect(rotated.status).toBe(200);
    expect(await exited(showPublisher)).not.toBe(0);
    await eventually(
      async () =>
        (await first.streams.channelStream('show')).stream?.state === 'ended' &&
        (await playlist(s3, 'live/show/360p30/index.m3u8')).includes('#EXT-X-ENDLIST'),
      15_000,
      'the rotated stream ended with ENDLIST',
    );

    // SIGTERM on the node holding "other": ENDLIST, then the node is down at once.
    const holder = (await ingestNodes(first)).find((node) => node.load.streams === 1)!;
    const node = nodes.find((candidate) => candidate.nodeId === holder.id)!;
    // The node's own operational endpoints, which load balancers and Prometheus scrape.
    const health = await fetch(`http://127.0.0.1:${node.httpPort}/health`);
    expect(await health.json()).toEqual({ status: 'ok', node: holder.id, streams: 1 });
    const metrics = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^ingest_live_streams 1$/m);
    expect(metrics).toMatch(/^ingest_rtmp_connections 1$/m);
    expect(holder.load.cpu).toBeGreaterThan(0);
    node.kill('SIGTERM');
    expect(await node.exited()).toBe(0);
    const exitedAt = Date.now();
    expect(await playlist(s3, 'live/other/360p30/index.m3u8')).toContain('#EXT-X-ENDLIST');
    await eventually(
      async () =>
        (await ingestNodes(second)).find((candidate) => candidate.id === holder.id)?.status ===
        'down',
      5000,
      'the stopped node down',
    );
    // Deregistered, not timed out: the node timeout is 2 s.
    expect(Date.now() - exitedAt).toBeLessThan(1500);
    expect(await liveStreams(second)).toEqual([]);
  }, 120_000);

  it('a SIGKILLed node: its stream ends at once, the publisher reconnects through the balancer and is live again on the other node at the same playback URL', async () => {
    const { apis, nodes, balancer } = await startCluster();
    const [first, second] = apis;
    const key = await first.streams.createKey('crash');
    const before = publish(balancer, key.streamKey);
    await eventually(
      async () => (await liveStreams(second)).some((s) => s.state === 'live'),
      25_000,
      'the stream live',
    );
    const { stream: running } = await second.streams.channelStream('crash');
    const holder = (await ingestNodes(first)).find((node) => node.load.streams === 1)!;
    const transcoders = transcoderPids(running!.id);
    expect(transcoders).toHaveLength(1);
    nodes.find((node) => node.nodeId === holder.id)!.kill('SIGKILL');
    expect(await exited(before)).not.toBe(0);
    // The dead node's ffmpeg reads its stdin: it ends with the node, nothing is left behind.
    await eventually(async () => transcoderPids(running!.id).length === 0, 10_000, 'no orphan');
    // The publisher comes back at once, as OBS's reconnect does, through the same URL.
    publish(balancer, key.streamKey);
    await eventually(
      async () => {
        const { stream } = await first.streams.channelStream('crash');
        return stream?.state === 'live' && stream.id !== running!.id;
      },
      30_000,
      'live again',
    );
    const { stream: again, playbackUrl } = await second.streams.channelStream('crash');
    expect(playbackUrl).toBe(running!.playbackUrl);
    expect(again!.playbackUrl).toBe(running!.playbackUrl);
    const survivor = (await ingestNodes(second)).find((node) => node.id !== holder.id)!;
    expect(survivor.load.streams).toBe(1);
    expect((await second.streams.channelStream('crash')).stream?.id).not.toBe(running!.id);
  }, 120_000);
});
