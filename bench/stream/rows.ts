// The rows of the latency table: what each one plays through, and its result.
import type { RowMeasurement } from './latency';

/** The rows, in table order. */
export const ROWS = {
  hearthLl: {
    label: 'Hearth LL-HLS',
    chain: 'ladder → the ingest node’s LL-HLS origin (parts, blocking reloads) → nginx edge',
  },
  hearthHls: {
    label: 'Hearth regular HLS',
    chain: 'ladder → S3 → nginx edge without a live origin (S3’s playlists, no parts)',
  },
  nginxRtmp2s: {
    label: 'nginx-rtmp, 2 s fragments',
    chain: 'RTMP repackaged to MPEG-TS, no ladder; key frames every 2 s',
  },
  nginxRtmp1s: {
    label: 'nginx-rtmp, 1 s fragments',
    chain: 'RTMP repackaged to MPEG-TS, no ladder; key frames every 1 s',
  },
} as const;

/** Which row. */
export type RowId = keyof typeof ROWS;

/** One row of the table: its measurement, or why there is none. */
export interface RowResult {
  /** Which row. */
  id: RowId;
  /** Its name in the table. */
  label: string;
  /** What the stream passes through. */
  chain: string;
  /** The figures, null when the row failed. */
  measured: RowMeasurement | null;
  /** Why the row failed, null when it did not. */
  error: string | null;
}

/** Runs one row's measurement; a failure becomes the row's error, so other rows still run. */
export async function attemptRow(
  id: RowId,
  measure: () => Promise<RowMeasurement>,
): Promise<RowResult> {
  console.log(`${ROWS[id].label}: ${ROWS[id].chain} ...`);
  try {
    const measured = await measure();
    console.log(JSON.stringify(measured));
    return { id, ...ROWS[id], measured, error: null };
  } catch (error) {
    console.error(error);
    return { id, ...ROWS[id], measured: null, error: errorText(error) };
  }
}

/** The row result of a row that never ran because what it needed failed. */
export function failedRow(id: RowId, error: unknown): RowResult {
  return { id, ...ROWS[id], measured: null, error: errorText(error) };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
