import { SignalingError } from './signaling';

/** A sentence fragment saying what went wrong, for the user: media errors in plain words. */
export function describeError(error: unknown): string {
  if (error instanceof DOMException) {
    if (error.name === 'NotAllowedError') return 'permission denied';
    if (error.name === 'NotFoundError') return 'no microphone found';
    if (error.name === 'NotReadableError') return 'the device is in use or failed';
    if (error.name === 'OverconstrainedError') return 'that microphone is no longer available';
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * What to show for a failed user action, or null for a failure caused by a lost connection: the
 * reconnecting state already tells that story.
 */
export function actionErrorMessage(error: unknown): string | null {
  if (error instanceof SignalingError && error.code === 'disconnected') return null;
  return describeError(error);
}
