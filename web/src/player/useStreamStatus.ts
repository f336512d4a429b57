import type { ChannelStream, LiveStream } from '@hearth/protocol';
import { computed, onScopeDispose, ref, shallowRef, type Ref } from 'vue';
import { ApiError } from '../api/http';
import { fetchChannelStream } from '../api/streams';
import { StreamEventsClient } from './stream-events';

/** Where a channel's broadcast is: `unknown` until the first answer arrives. */
export type StreamStatus = 'unknown' | 'offline' | 'starting' | 'live' | 'ended';

/** The screen share a channel shows live: who shares. */
export type ChannelShare = NonNullable<ChannelStream['share']>;

/** Settings of `useStreamStatus`. */
export interface UseStreamStatusOptions {
  /** Counts this page as a viewer of the channel while its events socket is connected. */
  watch: boolean;
}

/** What `useStreamStatus` returns. */
export interface StreamStatusState {
  /** Where the channel's broadcast is. */
  status: Readonly<Ref<StreamStatus>>;
  /** The current or just ended stream, or null while the channel is offline. */
  stream: Readonly<Ref<LiveStream | null>>;
  /** The channel's master playlist URL; it stays the same across streams. */
  playbackUrl: Readonly<Ref<string | null>>;
  /** People watching the channel right now. */
  viewers: Readonly<Ref<number>>;
  /** The channel's live screen share, or null: read over REST, then kept current by events. */
  share: Readonly<Ref<ChannelShare | null>>;
  /** The events socket dropped and is reconnecting: the status may be out of date meanwhile. */
  reconnecting: Readonly<Ref<boolean>>;
  /** Why the status could not be read or kept up to date, if it could not. */
  error: Readonly<Ref<string | null>>;
}

// A failed status request is tried again after this long, so a page opened during a server
// restart recovers by itself.
const REFRESH_RETRY_MS = 5_000;

// Client errors other than rate limiting (a malformed channel name) repeat on every attempt.
function isTransient(failure: unknown): boolean {
  if (!(failure instanceof ApiError)) return true;
  return failure.status === 0 || failure.status === 429 || failure.status >= 500;
}

/**
 * A channel's broadcast status: read over REST, then kept current by the events socket. It owns
 * the socket, its request in flight and its retry timer, and frees all three when the calling
 * scope is disposed.
 */
export function useStreamStatus(
  channel: string,
  options: UseStreamStatusOptions,
): StreamStatusState {
  const stream = shallowRef<LiveStream | null>(null);
  const playbackUrl = ref<string | null>(null);
  const loaded = ref(false);
  const viewers = ref(0);
  const share = shallowRef<ChannelShare | null>(null);
  const reconnecting = ref(false);
  const fetchError = ref<string | null>(null);
  const socketError = ref<string | null>(null);
  // Bumped by every notification, so an answer requested before the latest notification arrived
  // does not overwrite the newer state that notification brought.
  let streamEpoch = 0;
  let viewerEpoch = 0;
  let shareEpoch = 0;
  let inFlight: AbortController | null = null;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;

  async function refresh(): Promise<void> {
    inFlight?.abort();
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    const controller = new AbortController();
    inFlight = controller;
    const requestedAt = { stream: streamEpoch, viewers: viewerEpoch, share: shareEpoch };
    try {
      const body = await fetchChannelStream(channel, controller.signal);
      if (controller.signal.aborted) return;
      playbackUrl.value = body.playbackUrl;
      // The same share keeps its object unless it moved on or off the broadcast, so watchers of
      // the share react to changes only.
      const current = share.value;
      const changed =
        body.share?.peerId !== current?.peerId || body.share?.broadcast !== current?.broadcast;
      if (requestedAt.share === shareEpoch && changed) share.value = body.share;
      if (requestedAt.stream === streamEpoch) stream.value = body.stream;
      if (body.stream && requestedAt.viewers === viewerEpoch) viewers.value = body.stream.viewers;
      loaded.value = true;
      fetchError.value = null;
    } catch (failure) {
      if (controller.signal.aborted) return;
      fetchError.value = failure instanceof Error ? failure.message : String(failure);
      if (isTransient(failure)) retryTimer = setTimeout(() => void refresh(), REFRESH_RETRY_MS);
    } finally {
      if (inFlight === controller) inFlight = null;
    }
  }

  function applyStream(next: LiveStream): void {
    streamEpoch++;
    stream.value = next;
    loaded.value = true;
  }

  const events = new StreamEventsClient({ channel, watch: options.watch });
  events.events.on('open', () => {
    reconnecting.value = false;
    socketError.value = null;
    void refresh();
  });
  events.events.on('disconnect', ({ reason, retryInMs }) => {
    reconnecting.value = retryInMs !== null;
    socketError.value = retryInMs === null ? `Live updates are unavailable: ${reason}.` : null;
  });
  // Stream notifications carry the viewer count of the moment the stream changed state, which
  // is stale by now; `viewerCount` is the only source of viewer numbers once connected (the
  // server sends the current count as soon as the socket opens, then every change).
  events.events.on('streamStarted', (data) => applyStream(data.stream));
  // Whether the live stream is the bridge of the channel's share (`share.broadcast`) is only in
  // the status: the api announces `streamLive` when it sends the share's spectators to the
  // stream, and a bridged stream that ends takes the share off the broadcast, so both read it.
  events.events.on('streamLive', (data) => {
    applyStream(data.stream);
    void refresh();
  });
  events.events.on('streamEnded', (data) => {
    applyStream(data.stream);
    void refresh();
  });
  events.events.on('viewerCount', (data) => {
    viewerEpoch++;
    viewers.value = data.viewers;
  });
  events.events.on('shareStarted', ({ peerId, displayName }) => {
    shareEpoch++;
    share.value = { peerId, displayName, broadcast: false, moveWebrtc: false };
  });
  // The channel may hold another share: the status says which, if any.
  events.events.on('shareEnded', ({ peerId }) => {
    if (share.value?.peerId !== peerId) return;
    shareEpoch++;
    share.value = null;
    void refresh();
  });
  // The first answer is not held back until the socket opens; the refresh on `open` then closes
  // the window in which a change could happen before the socket listened.
  void refresh();

  onScopeDispose(() => {
    events.close();
    inFlight?.abort();
    inFlight = null;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
  });

  const status = computed<StreamStatus>(() => {
    if (stream.value) return stream.value.state;
    return loaded.value ? 'offline' : 'unknown';
  });
  const error = computed(() => fetchError.value ?? socketError.value);

  return { status, stream, playbackUrl, viewers, share, reconnecting, error };
}
