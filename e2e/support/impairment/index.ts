/**
 * The impaired-network harness of issue 11 (§3): userspace UDP and TCP relays that put loss,
 * burst loss, delay, jitter, reordering, a rate cap with a bounded queue, and blackouts between a
 * client and a server, since this kernel has no netem; plus a tbf bottleneck in a network
 * namespace where a kernel queue is wanted.
 *
 *   const relay = await UdpImpairmentRelay.start({ target: { host: '127.0.0.1', port }, seed: 1 });
 *   // Clients send to relay.port; the server sees one source port per client.
 *   relay.set(IMPAIRMENT_PROFILES['3g']);                 // both directions
 *   relay.set({ downstream: { lossPercent: 20 } });       // one direction
 *   relay.set({ blackout: true }); relay.set({ blackout: false });
 *   relay.stats().upstream.dropped.random;                // what was applied
 *
 * It lives in e2e/support because it is test and benchmark support that several parts use
 * (voice-sfu tests, e2e tests, bench/), like the rest of this folder, not a library a service
 * ships (which is what packages/ holds).
 */
export { ImpairmentDice, type LossCause, type PacketFate } from './dice';
export { DatagramLink, type PacketDestination, type LinkBounds } from './datagram-link';
export {
  createKernelBottleneck,
  kernelBottleneckUnavailableReason,
  type KernelBottleneck,
} from './kernel-bottleneck';
export { randomSeed, SeededRandom } from './random';
export {
  applyPatch,
  IMPAIRMENT_PROFILES,
  NO_IMPAIRMENT,
  queueBytesFor,
  type BurstLossModel,
  type DirectionImpairment,
  type ImpairmentPatch,
  type ImpairmentProfileName,
  type RelayImpairment,
} from './settings';
export { DROP_CAUSES, totalDropped, type DirectionStats, type DropCause } from './stats';
export { SEGMENT_BYTES } from './stream-link';
export { TcpImpairmentRelay, type TcpRelayOptions, type TcpRelayStats } from './tcp-relay';
export {
  UdpImpairmentRelay,
  type Endpoint,
  type UdpRelayOptions,
  type UdpRelayStats,
  type UdpSessionInfo,
} from './udp-relay';
