/** One rung of the encoding ladder. */
export interface Rendition {
  /** Short name, also the folder of its playlist and segments: `1080p60`, `720p30`, `source`. */
  readonly name: string;
  /** Output width in pixels. */
  readonly width: number;
  /** Output height in pixels. */
  readonly height: number;
  /** Output frame rate. */
  readonly fps: number;
  /** Video bitrate in kbit/s (for passthrough, the source's estimated bitrate). */
  readonly videoBitrateKbps: number;
  /** Audio bitrate in kbit/s. */
  readonly audioBitrateKbps: number;
  /** RFC 6381 codecs string for the master playlist, e.g. `avc1.64002a,mp4a.40.2`. */
  readonly codecs: string;
  /** True when the video is copied from the source instead of encoded. */
  readonly passthrough: boolean;
}

/** A segment the transcoder has finished writing to the local work folder. */
export interface SegmentReady {
  /** Name of the rendition it belongs to. */
  readonly rendition: string;
  /** Absolute path of the segment file (fragmented MP4: its parts, concatenated). */
  readonly localPath: string;
  /** Its media sequence number within the rendition, counted across ffmpeg runs. */
  readonly sequence: number;
  /** The ffmpeg run that wrote it, whose init segment it needs. */
  readonly run: number;
  /** Duration in seconds, from its video samples. */
  readonly durationSec: number;
  /** Wall-clock time of the segment's first frame (EXT-X-PROGRAM-DATE-TIME). */
  readonly programDateTime: Date;
  /** True for the first segment after ffmpeg restarted: players must reset their decoder. */
  readonly discontinuity: boolean;
}
