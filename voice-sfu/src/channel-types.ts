import type { types } from 'mediasoup';
import type { MediaSource, Participant, RtpParameters } from '@hearth/protocol';
import type { Identity } from '@hearth/server-common';
import type { EdgeLayout } from './edge';
import type { ShareBridgeCloseReason } from './share-bridge';

/** Events of a Channel. */
export type ChannelEvents = {
  /** The channel closed: its last peer left, it was deleted, or its worker died. */
  closed: [];
  /** A producer opened on the core router: a local peer's, or one piped in over a link. */
  producerOpened: [producer: types.Producer];
  /** A participant joined or changed; `linkId` names the link it came over, if remote. */
  participantUpserted: [participant: Participant, linkId: string | undefined];
  /** A participant left; `linkId` names the link it came over, if remote. */
  participantRemoved: [peerId: string, linkId: string | undefined];
  /** A peer joined on this node. */
  peerJoined: [peerId: string, identity: Identity];
  /** A peer on this node left or was removed. */
  peerLeft: [peerId: string];
  /** A local moderator muted or unmuted a participant served by another node. */
  remoteServerMuteRequested: [peerId: string, muted: boolean, linkId: string];
  /** A local moderator stopped the share of a participant served by another node. */
  remoteShareStopRequested: [peerId: string, message: string, linkId: string];
  /** This node's viewers of a share piped in over `linkId` want layers up to `spatialLayer`. */
  shareWish: [producerId: string, spatialLayer: number, linkId: string];
  /** A share bridge closed: closed by its owner, its share ended, or the channel closed. */
  bridgeClosed: [bridgeId: string, reason: ShareBridgeCloseReason];
};

/** Why a channel closes, which decides what its remaining peers are told. */
export type ChannelCloseReason = 'empty' | 'deleted' | 'released' | 'worker-died' | 'shutdown';

/** What a producer piped in from another node looks like at its source. */
export interface RemoteProducerInfo {
  /** The producer's id, kept across the pipe. */
  producerId: string;
  /** The participant sending it. */
  peerId: string;
  /** Media kind. */
  kind: types.MediaKind;
  /** What it sends. */
  source: MediaSource;
  /** RTP parameters of the sending pipe consumer. */
  rtpParameters: RtpParameters;
  /** Whether it is paused at its source. */
  paused: boolean;
}

/** What a newly created WebRTC transport tells the client. */
export interface WebRtcTransportInfo {
  /** Transport id. */
  id: string;
  /** ICE parameters. */
  iceParameters: types.IceParameters;
  /** ICE candidates of the worker's WebRtcServer. */
  iceCandidates: types.IceCandidate[];
  /** DTLS parameters. */
  dtlsParameters: types.DtlsParameters;
}

/** Where a channel's routers are, for placement checks, metrics and tests. */
export interface ChannelLayout {
  /** The core router holding the producers. */
  core: { routerId: string; workerIndex: number };
  /** The edge routers holding the consumers. */
  edges: EdgeLayout[];
}
