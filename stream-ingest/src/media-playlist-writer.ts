/** One segment line of a media playlist. */
export interface PlaylistSegment {
  /** URI relative to the playlist, e.g. `abc123-42.ts`. */
  readonly uri: string;
  /** Duration in seconds; written with millisecond precision. */
  readonly durationSec: number;
  /** Wall-clock time of the segment's first frame. */
  readonly programDateTime: Date;
  /** True when the segment starts a new timeline (encoder restart, gap): players reset decoding. */
  readonly discontinuity: boolean;
  /** URI of the init segment a fragmented MP4 segment needs (EXT-X-MAP). */
  readonly mapUri?: string | undefined;
}

/** Everything a media playlist says, for `renderMediaPlaylist`. */
export interface MediaPlaylist {
  /**
   * Smallest target duration in seconds (0: derive it from the segments). The written value is
   * this or the longest listed segment rounded up, whichever is larger; a live playlist should
   * pass the same value on every render, because its target duration must not change.
   */
  readonly targetDuration: number;
  /** Sequence number of the first listed segment (EXT-X-MEDIA-SEQUENCE). */
  readonly mediaSequence: number;
  /** Discontinuities that left the playlist before its first segment (DISCONTINUITY-SEQUENCE). */
  readonly discontinuitySequence: number;
  /** The listed segments, oldest first. */
  readonly segments: readonly PlaylistSegment[];
  /** True once no segment will be added: writes EXT-X-ENDLIST. */
  readonly ended: boolean;
  /** `VOD` for a complete recording, `EVENT` for a playlist that only grows; omit for live. */
  readonly playlistType?: 'VOD' | 'EVENT' | undefined;
}

// Version 3 is the lowest that allows decimal EXTINF durations (RFC 8216 section 7); EXT-X-MAP
// in a playlist of media segments (fragmented MP4) needs version 6.
const HLS_VERSION = 3;
const HLS_VERSION_WITH_MAP = 6;

// Durations are written in milliseconds, so the target duration is checked against the same
// rounded value the player reads.
function formatDuration(durationSec: number): string {
  return durationSec.toFixed(3);
}

function checkCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new TypeError(`${name} must be a non-negative integer, got ${value}`);
  }
}

function checkSegment(segment: PlaylistSegment, index: number): void {
  if (segment.uri === '' || /[\r\n]/.test(segment.uri)) {
    throw new TypeError(`segment ${index}: uri must be one non-empty line`);
  }
  if (segment.mapUri !== undefined && !/^[^\r\n"]+$/.test(segment.mapUri)) {
    throw new TypeError(`segment ${index}: mapUri must be one line without quotes`);
  }
  if (!Number.isFinite(segment.durationSec) || segment.durationSec <= 0) {
    throw new TypeError(`segment ${index}: durationSec must be > 0, got ${segment.durationSec}`);
  }
  if (Number.isNaN(segment.programDateTime.getTime())) {
    throw new TypeError(`segment ${index}: programDateTime is not a valid date`);
  }
}

/** The target duration a playlist gets: the given minimum or the longest segment rounded up. */
export function targetDurationFor(minimum: number, segments: readonly PlaylistSegment[]): number {
  let target = Math.max(1, Math.ceil(minimum));
  for (const segment of segments) {
    // RFC 8216 allows rounding to the nearest integer; rounding up keeps strict players happy.
    target = Math.max(target, Math.ceil(Number(formatDuration(segment.durationSec))));
  }
  return target;
}

/** Renders an HLS media playlist (RFC 8216) as text, one tag per line, ending in a newline. */
export function renderMediaPlaylist(playlist: MediaPlaylist): string {
  checkCount('mediaSequence', playlist.mediaSequence);
  checkCount('discontinuitySequence', playlist.discontinuitySequence);
  if (!Number.isFinite(playlist.targetDuration) || playlist.targetDuration < 0) {
    throw new TypeError(`targetDuration must be >= 0, got ${playlist.targetDuration}`);
  }
  playlist.segments.forEach(checkSegment);

  const lines = [
    '#EXTM3U',
    `#EXT-X-VERSION:${playlist.segments.some((s) => s.mapUri) ? HLS_VERSION_WITH_MAP : HLS_VERSION}`,
    `#EXT-X-TARGETDURATION:${targetDurationFor(playlist.targetDuration, playlist.segments)}`,
    `#EXT-X-MEDIA-SEQUENCE:${playlist.mediaSequence}`,
    `#EXT-X-DISCONTINUITY-SEQUENCE:${playlist.discontinuitySequence}`,
  ];
  if (playlist.playlistType) lines.push(`#EXT-X-PLAYLIST-TYPE:${playlist.playlistType}`);
  // Every segment starts with a key frame: the transcoder uses fixed GOPs aligned to segment
  // boundaries (scene-cut key frames off), so each one decodes without its predecessor.
  lines.push('#EXT-X-INDEPENDENT-SEGMENTS');
  let mapUri: string | undefined;
  for (const segment of playlist.segments) {
    if (segment.discontinuity) lines.push('#EXT-X-DISCONTINUITY');
    if (segment.mapUri !== undefined && segment.mapUri !== mapUri) {
      lines.push(`#EXT-X-MAP:URI="${segment.mapUri}"`);
      mapUri = segment.mapUri;
    }
    lines.push(
      `#EXT-X-PROGRAM-DATE-TIME:${segment.programDateTime.toISOString()}`,
      `#EXTINF:${formatDuration(segment.durationSec)},`,
      segment.uri,
    );
  }
  if (playlist.ended) lines.push('#EXT-X-ENDLIST');
  return `${lines.join('\n')}\n`;
}
