import { eventually } from './wait';

/**
 * Waits until the edge serves a media playlist from storage once its stream ended: ended
 * (EXT-X-ENDLIST) and without LL-HLS parts, which only the live origin lists.
 */
export function storagePlaylistEnded(mediaUrl: string, timeoutMs: number): Promise<void> {
  return eventually(
    async () => {
      const response = await fetch(mediaUrl);
      const text = response.ok ? await response.text() : '';
      return text.trimEnd().endsWith('#EXT-X-ENDLIST') && !text.includes('#EXT-X-PART:');
    },
    timeoutMs,
    'storage’s final playlist on the edge',
  );
}
