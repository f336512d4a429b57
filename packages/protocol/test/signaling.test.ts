import { describe, expect, it } from 'vitest';
import {
  channelNameSchema,
  createChannelBodySchema,
  describeZodError,
  displayNameSchema,
  isVoiceMethod,
  isVoiceNotification,
  requestEnvelopeSchema,
  serverMessageSchema,
  voiceNotificationSchemas,
  voiceRequestSchemas,
} from '../src/index';

const opusCodec = {
  mimeType: 'audio/opus',
  payloadType: 100,
  clockRate: 48000,
  channels: 2,
  parameters: { useinbandfec: 1 },
};
const dtlsParameters = { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD' }] };

// One valid and one invalid example per request, with the path the error must name.
const requestCases: Record<string, { valid: unknown; invalid: unknown; path: string }> = {
  getRouterRtpCapabilities: { valid: {}, invalid: { extra: 1 }, path: '(root)' },
  join: {
    valid: { channel: 'lobby', rtpCapabilities: { codecs: [], headerExtensions: [] } },
    invalid: { channel: 'bad name!', rtpCapabilities: {} },
    path: 'channel',
  },
  createTransport: {
    valid: { direction: 'recv' },
    invalid: { direction: 'both' },
    path: 'direction',
  },
  connectTransport: {
    valid: { transportId: 't1', dtlsParameters },
    invalid: { transportId: 't1', dtlsParameters: { fingerprints: [] } },
    path: 'dtlsParameters.fingerprints',
  },
  restartIce: { valid: { transportId: 't1' }, invalid: { transportId: '' }, path: 'transportId' },
  produce: {
    valid: { transportId: 't1', kind: 'audio', rtpParameters: { codecs: [opusCodec] } },
    invalid: {
      transportId: 't1',
      kind: 'audio',
      rtpParameters: { codecs: [{ ...opusCodec, payloadType: 300 }] },
    },
    path: 'rtpParameters.codecs.0.payloadType',
  },
  closeProducer: { valid: { producerId: 'p' }, invalid: { producerId: 5 }, path: 'producerId' },
  setConsumerPaused: {
    valid: { consumerId: 'c', paused: true },
    invalid: { consumerId: 'c', paused: 1 },
    path: 'paused',
  },
  setConsumerPreferredLayers: {
    valid: { consumerId: 'c', spatialLayer: 2, temporalLayer: 0 },
    invalid: { consumerId: 'c', spatialLayer: 3 },
    path: 'spatialLayer',
  },
  setProducerPaused: {
    valid: { producerId: 'p', paused: true },
    invalid: { producerId: 'p', paused: 'yes' },
    path: 'paused',
  },
  resumeConsumer: { valid: { consumerId: 'c' }, invalid: {}, path: 'consumerId' },
  setDeafened: { valid: { deafened: false }, invalid: { deafened: null }, path: 'deafened' },
  reportStats: {
    valid: {
      windowMs: 2000,
      packetsReceived: 100,
      packetsLost: 2,
      jitterMs: 8,
      jitterBufferDelayMs: 40,
      concealedRatio: 0.01,
      rttMs: null,
      outboundKbps: 32,
    },
    invalid: {
      windowMs: 2000,
      packetsReceived: 100,
      packetsLost: 2,
      jitterMs: 8,
      jitterBufferDelayMs: 40,
      concealedRatio: 1.5,
      rttMs: null,
      outboundKbps: 32,
    },
    path: 'concealedRatio',
  },
  stopShare: {
    valid: { peerId: 'p' },
    invalid: { peerId: '' },
    path: 'peerId',
  },
  setServerMuted: {
    valid: { peerId: 'p', muted: true },
    invalid: { peerId: 'x'.repeat(65), muted: true },
    path: 'peerId',
  },
  leave: { valid: {}, invalid: { now: true }, path: '(root)' },
};

describe('signaling requests', () => {
  it('has a valid and an invalid example for every method', () => {
    expect(Object.keys(requestCases).sort()).toEqual(Object.keys(voiceRequestSchemas).sort());
  });

  for (const [method, example] of Object.entries(requestCases)) {
    it(`${method}: accepts valid data and names the failing field of invalid data`, () => {
      const schema = voiceRequestSchemas[method as keyof typeof voiceRequestSchemas].request;
      expect(schema.safeParse(example.valid).success).toBe(true);
      const result = schema.safeParse(example.invalid);
      expect(result.success).toBe(false);
      expect(describeZodError(result.error!)).toContain(`${example.path}:`);
    });
  }

  it('requestEnvelopeSchema refuses a missing id, a negative id and a wrong kind', () => {
    expect(
      requestEnvelopeSchema.safeParse({ kind: 'request', id: 1, method: 'leave' }).success,
    ).toBe(true);
    for (const bad of [
      { kind: 'request', method: 'leave' },
      { kind: 'request', id: -1, method: 'leave' },
      { kind: 'response', id: 1, method: 'leave' },
      { kind: 'request', id: 1.5, method: 'leave' },
      'leave',
      null,
    ]) {
      expect(requestEnvelopeSchema.safeParse(bad).success).toBe(false);
    }
  });

  it('isVoiceMethod() knows the methods and ignores prototype names', () => {
    expect(isVoiceMethod('join')).toBe(true);
    expect(isVoiceMethod('toString')).toBe(false);
    expect(isVoiceMethod('__proto__')).toBe(false);
  });
});

describe('server messages', () => {
  it('serverMessageSchema accepts responses, errors with a null id, and notifications', () => {
    const valid = [
      { kind: 'response', id: 3, ok: true, data: {} },
      { kind: 'response', id: null, ok: false, error: { code: 'bad_request', message: 'x' } },
      { kind: 'notification', method: 'activeSpeaker', data: { peerId: null } },
    ];
    for (const message of valid) expect(serverMessageSchema.safeParse(message).success).toBe(true);
  });

  it('serverMessageSchema refuses a success without an id and an unknown error code', () => {
    expect(
      serverMessageSchema.safeParse({ kind: 'response', id: null, ok: true, data: {} }).success,
    ).toBe(false);
    expect(
      serverMessageSchema.safeParse({
        kind: 'response',
        id: 1,
        ok: false,
        error: { code: 'nope', message: '' },
      }).success,
    ).toBe(false);
  });

  it('notification schemas check their data', () => {
    expect(isVoiceNotification('audioLevels')).toBe(true);
    expect(isVoiceNotification('constructor')).toBe(false);
    expect(
      voiceNotificationSchemas.audioLevels.safeParse({ levels: [{ peerId: 'p', volume: -30 }] })
        .success,
    ).toBe(true);
    expect(
      voiceNotificationSchemas.audioLevels.safeParse({ levels: [{ peerId: 'p' }] }).success,
    ).toBe(false);
    expect(voiceNotificationSchemas.channelClosed.safeParse({ reason: 'bored' }).success).toBe(
      false,
    );
  });
});

describe('names', () => {
  it.each([
    ['lobby', true],
    ['Game_Night-2', true],
    ['', false],
    ['-leading', false],
    ['has space', false],
    ['x'.repeat(65), false],
    ['../etc', false],
  ])('channelNameSchema(%j) -> %s', (name, ok) => {
    expect(channelNameSchema.safeParse(name).success).toBe(ok);
  });

  it.each([
    ['Alice', true],
    ['  Bob  ', true],
    ['Zoë 🎧', true],
    ['', false],
    ['   ', false],
    ['x'.repeat(33), false],
    ['bell\u0007', false],
  ])('displayNameSchema(%j) -> %s', (name, ok) => {
    expect(displayNameSchema.safeParse(name).success).toBe(ok);
  });

  it('displayNameSchema trims', () => {
    expect(displayNameSchema.parse('  Bob  ')).toBe('Bob');
  });

  it('createChannelBodySchema refuses unknown fields', () => {
    expect(createChannelBodySchema.safeParse({ name: 'a', owner: 'me' }).success).toBe(false);
  });
});

describe('produce requests for screen shares', () => {
  const vp8 = { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 };
  const share = (encodings: unknown[], extra: Record<string, unknown> = {}) =>
    voiceRequestSchemas.produce.request.safeParse({
      transportId: 't1',
      kind: 'video',
      rtpParameters: { codecs: [vp8], encodings },
      ...extra,
    });
  const layer = (ssrc: number, maxBitrate = 1_000_000) => ({ ssrc, maxBitrate });

  it('take up to three simulcast layers with bounded bitrates', () => {
    expect(share([layer(1, 500_000), layer(2), layer(3, 8_000_000)]).success).toBe(true);
    const four = share([layer(1), layer(2), layer(3), layer(4)]);
    expect(four.success).toBe(false);
    expect(describeZodError(four.error!)).toMatch(/at most 3 encodings for video/);
  });

  it('refuse absurd bitrates, scales and sources that do not match the kind', () => {
    expect(share([layer(1, 1_000_000_000)]).success).toBe(false);
    expect(share([layer(1, 0)]).success).toBe(false);
    expect(share([{ ssrc: 1, scaleResolutionDownBy: 0.1 }]).success).toBe(false);
    expect(share([layer(1)], { source: 'microphone' }).success).toBe(false);
    const audioWithLayers = voiceRequestSchemas.produce.request.safeParse({
      transportId: 't1',
      kind: 'audio',
      rtpParameters: { codecs: [opusCodec], encodings: [{ ssrc: 1 }, { ssrc: 2 }] },
    });
    expect(audioWithLayers.success).toBe(false);
    expect(
      voiceRequestSchemas.produce.request.safeParse({
        transportId: 't1',
        kind: 'audio',
        source: 'screen-audio',
        rtpParameters: { codecs: [opusCodec], encodings: [{ ssrc: 1 }] },
      }).success,
    ).toBe(true);
  });

  it('carry a bounded capture size on screen video only', () => {
    const capture = { width: 2560, height: 1440, fps: 60 };
    expect(share([layer(1)], { capture }).success).toBe(true);
    expect(share([layer(1)], { capture: { ...capture, width: 100_000 } }).success).toBe(false);
    expect(share([layer(1)], { capture: { ...capture, fps: 0 } }).success).toBe(false);
    expect(share([layer(1)], { capture: { ...capture, extra: 1 } }).success).toBe(false);
    const microphone = voiceRequestSchemas.produce.request.safeParse({
      transportId: 't1',
      kind: 'audio',
      rtpParameters: { codecs: [opusCodec], encodings: [{ ssrc: 1 }] },
      capture,
    });
    expect(microphone.success).toBe(false);
    expect(describeZodError(microphone.error!)).toMatch(/only a screen share has a capture size/);
  });
});
