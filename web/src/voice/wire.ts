// The protocol schemas check the shape of WebRTC parameters and leave their values to mediasoup,
// while mediasoup-client types some of the same strings as literal unions (header extension URIs,
// fingerprint algorithms) and codec parameters as `unknown`. Both sides describe the same JSON,
// so crossing between them restates the type and never changes a value. Keeping every such
// conversion here means no other module needs a cast.
import type {
  DtlsParameters as WireDtlsParameters,
  IceParameters as WireIceParameters,
  RtpCapabilities as WireRtpCapabilities,
  RtpParameters as WireRtpParameters,
  VoiceResponseData,
} from '@hearth/protocol';
import type { types } from 'mediasoup-client';
import type { JoinIce } from './channel-link';

/** Router capabilities as received, typed for `device.load()`. */
export function toClientRtpCapabilities(capabilities: WireRtpCapabilities): types.RtpCapabilities {
  return capabilities as types.RtpCapabilities;
}

/** Device capabilities typed for the `join` request. */
export function toWireRtpCapabilities(capabilities: types.RtpCapabilities): WireRtpCapabilities {
  return capabilities as WireRtpCapabilities;
}

/**
 * A `createTransport` response, with the join's TURN servers and ICE policy, as the options of
 * `createSendTransport`/`createRecvTransport`.
 */
export function toTransportOptions(
  info: VoiceResponseData<'createTransport'>,
  ice: JoinIce,
): types.TransportOptions {
  return {
    id: info.id,
    iceServers: ice.iceServers,
    iceTransportPolicy: ice.iceTransportPolicy,
    iceParameters: toClientIceParameters(info.iceParameters),
    // The server's mediasoup names the candidate address `ip`; mediasoup-client reads `address`
    // first and falls back to `ip`, so both are set to the same value.
    iceCandidates: info.iceCandidates.map((candidate) => ({
      ...candidate,
      address: candidate.ip,
    })),
    dtlsParameters: info.dtlsParameters as types.DtlsParameters,
  };
}

/** ICE parameters from `restartIce`, typed for `transport.restartIce()`. */
export function toClientIceParameters(parameters: WireIceParameters): types.IceParameters {
  return parameters;
}

/** Local DTLS parameters typed for the `connectTransport` request. */
export function toWireDtlsParameters(parameters: types.DtlsParameters): WireDtlsParameters {
  return parameters;
}

/** Local RTP parameters typed for the `produce` request. */
export function toWireRtpParameters(parameters: types.RtpParameters): WireRtpParameters {
  return parameters as WireRtpParameters;
}

/** RTP parameters of a `newConsumer` notification, typed for `transport.consume()`. */
export function toClientRtpParameters(parameters: WireRtpParameters): types.RtpParameters {
  return parameters as types.RtpParameters;
}
