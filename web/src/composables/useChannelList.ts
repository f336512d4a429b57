import type { Channel } from '@hearth/protocol';
import { onScopeDispose, ref, shallowRef, type Ref } from 'vue';
import { listChannels } from '../api/channels';

/** What `useChannelList` returns. */
export interface ChannelList {
  /** The channels of the latest successful refresh. */
  channels: Readonly<Ref<readonly Channel[]>>;
  /** True until the first refresh finished. */
  loading: Readonly<Ref<boolean>>;
  /** Why the latest refresh failed, if it did. */
  error: Readonly<Ref<string | null>>;
  /** Refreshes now instead of waiting for the next tick. */
  refresh(): Promise<void>;
}

/**
 * The channel list, refreshed every `intervalMs`. It owns its timer and its request in flight
 * and stops both when the calling scope is disposed.
 */
export function useChannelList(intervalMs = 3_000): ChannelList {
  const channels = shallowRef<readonly Channel[]>([]);
  const loading = ref(true);
  const error = ref<string | null>(null);
  let inFlight: AbortController | null = null;
  let disposed = false;

  async function refresh(): Promise<void> {
    // An explicit refresh supersedes an older one that is still waiting for the server.
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    try {
      channels.value = await listChannels(controller.signal);
      error.value = null;
    } catch (failure) {
      if (controller.signal.aborted) return;
      error.value = failure instanceof Error ? failure.message : String(failure);
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        if (!disposed) loading.value = false;
      }
    }
  }

  // A tick is skipped while a refresh still waits, so a slow server is not asked twice at once.
  const timer = setInterval(() => {
    if (!inFlight) void refresh();
  }, intervalMs);
  void refresh();

  onScopeDispose(() => {
    disposed = true;
    clearInterval(timer);
    inFlight?.abort();
  });

  return { channels, loading, error, refresh };
}
