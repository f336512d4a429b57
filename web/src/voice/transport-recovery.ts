import type { types } from 'mediasoup-client';
import type { SignalingClient } from './signaling';
import { toClientIceParameters, toWireDtlsParameters } from './wire';

// How long a transport may stay `disconnected` before ICE is restarted: brief network blips
// recover by themselves within this time.
const DISCONNECTED_GRACE_MS = 2_000;
// ICE restarts in a row that may fail to reach `connected` before the transport is given up and
// the client joins again from scratch.
const MAX_ICE_RESTARTS = 3;

/**
 * Connects a transport over signaling and keeps it connected: ICE restarts after a failure or a
 * disconnection longer than a grace period. `onFailed` hears once restarts do not help, and the
 * owner must then replace the transport. Returns the function that stops watching, which the
 * owner calls when it closes the transport.
 */
export function superviseTransport(
  transport: types.Transport,
  signaling: SignalingClient,
  onFailed: (error: Error) => void,
): () => void {
  let stopped = false;
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  let restarts = 0;

  async function restartIce(): Promise<void> {
    if (stopped || transport.closed) return;
    restarts++;
    if (restarts > MAX_ICE_RESTARTS) {
      onFailed(new Error(`${transport.direction} transport keeps failing`));
      return;
    }
    try {
      const { iceParameters } = await signaling.request('restartIce', {
        transportId: transport.id,
      });
      if (stopped || transport.closed) return;
      await transport.restartIce({ iceParameters: toClientIceParameters(iceParameters) });
    } catch (error) {
      if (stopped || transport.closed) return;
      onFailed(error instanceof Error ? error : new Error(String(error)));
    }
  }

  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    signaling
      .request('connectTransport', {
        transportId: transport.id,
        dtlsParameters: toWireDtlsParameters(dtlsParameters),
      })
      .then(() => callback(), errback);
  });
  transport.on('connectionstatechange', (state) => {
    if (stopped) return;
    clearTimeout(graceTimer);
    graceTimer = undefined;
    if (state === 'connected') {
      restarts = 0;
    } else if (state === 'failed') {
      void restartIce();
    } else if (state === 'disconnected') {
      graceTimer = setTimeout(() => {
        graceTimer = undefined;
        if (transport.connectionState !== 'connected') void restartIce();
      }, DISCONNECTED_GRACE_MS);
    }
  });

  return () => {
    stopped = true;
    clearTimeout(graceTimer);
  };
}
