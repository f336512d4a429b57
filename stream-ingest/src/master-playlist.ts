import type { Rendition } from './hls-types';
import { maxrateKbps } from './ladder';
import { PLAYLIST_NAME } from './live-playlist';

// MPEG-TS adds 188-byte packet headers, PES headers and PAT/PMT tables on top of the elementary
// streams; the 720p30 and 480p30 rungs measured 4-7 % over their nominal bitrates here, so 8 %
// keeps BANDWIDTH an upper bound as RFC 8216 section 4.3.4.2 requires.
const TS_OVERHEAD = 1.08;

// EXT-X-VERSION 6 matches ffmpeg's media playlists; nothing in the master needs a higher one.
const HLS_VERSION = 6;

/** Peak bits per second of a rendition's segments, as BANDWIDTH announces it. */
export function peakBandwidth(rendition: Rendition): number {
  // For a passthrough rung this assumes the publisher's encoder keeps the same 110 % peak as
  // ours, which holds for OBS-style CBR.
  return Math.round((maxrateKbps(rendition) + rendition.audioBitrateKbps) * 1000 * TS_OVERHEAD);
}

/** Average bits per second of a rendition's segments, as AVERAGE-BANDWIDTH announces it. */
export function averageBandwidth(rendition: Rendition): number {
  return Math.round((rendition.videoBitrateKbps + rendition.audioBitrateKbps) * 1000 * TS_OVERHEAD);
}

/** Renders the master playlist: one variant per rendition, highest bandwidth first. */
export function renderMasterPlaylist(renditions: readonly Rendition[]): string {
  if (renditions.length === 0) throw new TypeError('at least one rendition is needed');
  // Ties go to more pixels per second, then to the copied source, which is the original quality.
  const ordered = [...renditions].sort(
    (a, b) =>
      peakBandwidth(b) - peakBandwidth(a) ||
      b.width * b.height * b.fps - a.width * a.height * a.fps ||
      Number(b.passthrough) - Number(a.passthrough),
  );
  const lines = ['#EXTM3U', `#EXT-X-VERSION:${HLS_VERSION}`, '#EXT-X-INDEPENDENT-SEGMENTS'];
  for (const r of ordered) {
    const attributes = [
      `BANDWIDTH=${peakBandwidth(r)}`,
      `AVERAGE-BANDWIDTH=${averageBandwidth(r)}`,
      `RESOLUTION=${r.width}x${r.height}`,
      `CODECS="${r.codecs}"`,
      // RFC 8216 4.3.4.2: a decimal-floating-point rounded to three decimal places.
      `FRAME-RATE=${r.fps.toFixed(3)}`,
    ];
    lines.push(`#EXT-X-STREAM-INF:${attributes.join(',')}`, `${r.name}/${PLAYLIST_NAME}`);
  }
  return `${lines.join('\n')}\n`;
}
