/** One segment listed in a media playlist. */
export interface PlaylistSegment {
  /** URI as written, relative to the playlist. */
  readonly uri: string;
  /** EXTINF duration in seconds. */
  readonly durationSec: number;
  /** Wall-clock time of its first frame, from its own or an earlier EXT-X-PROGRAM-DATE-TIME. */
  readonly programDateTime: Date | undefined;
  /** True when an EXT-X-DISCONTINUITY precedes it. */
  readonly discontinuity: boolean;
  /** Media sequence number: EXT-X-MEDIA-SEQUENCE plus its position in the list. */
  readonly sequence: number;
}

/** A parsed media playlist. */
export interface MediaPlaylist {
  /** EXT-X-MEDIA-SEQUENCE, 0 when absent (RFC 8216 4.3.3.2). */
  readonly mediaSequence: number;
  /** EXT-X-TARGETDURATION in seconds, if present. */
  readonly targetDurationSec: number | undefined;
  /** Segments in playlist order. */
  readonly segments: readonly PlaylistSegment[];
  /** True when EXT-X-ENDLIST is present: no segment will be added. */
  readonly endList: boolean;
}

/** Thrown for text that is not a well-formed media playlist. */
export class PlaylistParseError extends Error {
  constructor(message: string, line: number) {
    super(`line ${line}: ${message}`);
    this.name = 'PlaylistParseError';
  }
}

// ISO 8601 as HLS uses it. ffmpeg writes offsets without a colon ("+0000"), which
// `Date.parse` only accepts by accident of V8's legacy parser, so it is parsed here explicitly.
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/** Parses a media playlist such as the ones ffmpeg's hls muxer writes. */
export function parseMediaPlaylist(text: string): MediaPlaylist {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.trim() !== '#EXTM3U') throw new PlaylistParseError('missing #EXTM3U', 1);

  let mediaSequence = 0;
  let targetDurationSec: number | undefined;
  let endList = false;
  const segments: PlaylistSegment[] = [];
  let pendingDuration: number | undefined;
  let pendingDateTime: Date | undefined;
  let pendingDiscontinuity = false;
  let lastDateTimeEnd: number | undefined;

  lines.forEach((raw, index) => {
    const line = raw.trim();
    const lineNumber = index + 1;
    if (line.length === 0 || index === 0) return;
    if (!line.startsWith('#')) {
      if (pendingDuration === undefined) {
        throw new PlaylistParseError(`segment "${line}" has no #EXTINF`, lineNumber);
      }
      // A segment without its own date continues from the previous one (RFC 8216 4.3.2.6).
      const startMs = pendingDateTime?.getTime() ?? lastDateTimeEnd;
      segments.push({
        uri: line,
        durationSec: pendingDuration,
        programDateTime: startMs === undefined ? undefined : new Date(startMs),
        discontinuity: pendingDiscontinuity,
        sequence: mediaSequence + segments.length,
      });
      lastDateTimeEnd = startMs === undefined ? undefined : startMs + pendingDuration * 1000;
      pendingDuration = undefined;
      pendingDateTime = undefined;
      pendingDiscontinuity = false;
      return;
    }
    const colon = line.indexOf(':');
    const tag = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1);
    switch (tag) {
      case '#EXTINF':
        pendingDuration = parseNumber(value.split(',')[0] ?? '', tag, lineNumber);
        break;
      case '#EXT-X-PROGRAM-DATE-TIME':
        pendingDateTime = parseDateTime(value, lineNumber);
        break;
      case '#EXT-X-DISCONTINUITY':
        pendingDiscontinuity = true;
        break;
      case '#EXT-X-MEDIA-SEQUENCE':
        if (segments.length > 0) {
          throw new PlaylistParseError('EXT-X-MEDIA-SEQUENCE after the first segment', lineNumber);
        }
        mediaSequence = parseNumber(value, tag, lineNumber);
        break;
      case '#EXT-X-TARGETDURATION':
        targetDurationSec = parseNumber(value, tag, lineNumber);
        break;
      case '#EXT-X-ENDLIST':
        endList = true;
        break;
      default:
        // Other tags (VERSION, INDEPENDENT-SEGMENTS, ...) say nothing about which segments exist.
        break;
    }
  });
  return { mediaSequence, targetDurationSec, segments, endList };
}

function parseNumber(value: string, tag: string, line: number): number {
  const number = Number(value.trim());
  if (value.trim().length === 0 || !Number.isFinite(number) || number < 0) {
    throw new PlaylistParseError(`${tag} needs a non-negative number, got "${value}"`, line);
  }
  return number;
}

function parseDateTime(value: string, line: number): Date {
  const match = DATE_TIME.exec(value.trim());
  if (!match) throw new PlaylistParseError(`invalid EXT-X-PROGRAM-DATE-TIME "${value}"`, line);
  const [, year, month, day, hour, minute, second, fraction = '0', zone] = match;
  // Date.UTC would silently roll "13" months over into the next year.
  if (+month! < 1 || +month! > 12 || +day! < 1 || +day! > 31 || +hour! > 23 || +minute! > 59) {
    throw new PlaylistParseError(`invalid EXT-X-PROGRAM-DATE-TIME "${value}"`, line);
  }
  const ms = Math.round(Number(`0.${fraction}`) * 1000);
  const utc = Date.UTC(+year!, +month! - 1, +day!, +hour!, +minute!, +second!, ms);
  return new Date(utc - zoneOffsetMinutes(zone!) * 60_000);
}

function zoneOffsetMinutes(zone: string): number {
  if (zone === 'Z') return 0;
  const digits = zone.slice(1).replace(':', '');
  const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0');
  return zone.startsWith('-') ? -minutes : minutes;
}
