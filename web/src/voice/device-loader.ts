import type { RtpCapabilities } from '@hearth/protocol';
import { Device } from 'mediasoup-client';
import { fetchVoiceCapabilities } from '../api/channels';
import { toClientRtpCapabilities } from './wire';

/**
 * Loads the mediasoup-client Device and keeps it for every join of the page. Loading probes the
 * browser's codecs with a throw-away peer connection, which takes tens of milliseconds, so the
 * channel view starts it with `preload()` while the user is still on the join form.
 */
export class DeviceLoader {
  #loading: Promise<Device> | null = null;
  #capabilities: string | null = null;

  /** Fetches the router capabilities over REST and loads a Device in the background. */
  preload(): void {
    if (this.#loading) return;
    const loading = fetchVoiceCapabilities().then((capabilities) => this.load(capabilities));
    // A failed preload is not an error: the join loads the Device itself.
    loading.catch(() => {
      if (this.#loading === loading) this.#loading = null;
    });
  }

  /** A Device loaded or being loaded, if any; joins use it without asking the server again. */
  loaded(): Promise<Device> | null {
    return this.#loading;
  }

  /** The Device for these router capabilities, loading a new one if they changed. */
  load(capabilities: RtpCapabilities): Promise<Device> {
    const key = JSON.stringify(capabilities);
    if (this.#loading && this.#capabilities === key) return this.#loading;
    const loading = (async () => {
      const device = await Device.factory();
      await device.load({ routerRtpCapabilities: toClientRtpCapabilities(capabilities) });
      return device;
    })();
    this.#loading = loading;
    this.#capabilities = key;
    loading.catch(() => {
      if (this.#loading === loading) this.#loading = null;
    });
    return loading;
  }
}
