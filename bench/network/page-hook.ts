// What bench:network runs inside each Chromium page: a synthetic voice as the microphone, with a
// loud marker once a period, timed as the voice emits it; a marker detector on the received
// audio; a poll of the received audio's statistics and of the microphone's sender; and, per page,
// the rewrites of the SDP mediasoup-client hands the browser (remote candidates, NACK for the
// microphone's Opus).

/** How a page is set up. */
export interface PageHookConfig {
  /** Replace this address in the remote ICE candidates by `to` (a page that bypasses the relay). */
  candidateRewrite: { from: string; to: string } | null;
  /**
   * Negotiate NACK for the microphone's Opus, as `opusNack: true` in the producer's codec options
   * would: `nack` in the send transport's remote answer and in the produce request.
   */
  uplinkNack: boolean;
  /** Milliseconds between two markers in the synthetic voice. */
  markerPeriodMs: number;
  /** Milliseconds between two polls of the statistics. */
  pollMs: number;
}

/** One poll of the received audio stream's `inbound-rtp` statistics. */
export interface InboundSample {
  /** Wall-clock time of the poll, in ms. */
  at: number;
  /** The statistics' own timestamp (Chromium caches a report for a few tens of ms), in ms. */
  statsAt: number;
  /** The `inbound-rtp` counters of the same names, cumulative. */
  totalSamplesReceived: number;
  concealedSamples: number;
  concealmentEvents: number;
  packetsReceived: number;
  packetsLost: number;
  jitterBufferDelay: number;
  jitterBufferEmittedCount: number;
  fecPacketsReceived: number;
  nackCount: number;
}

/** One poll of the microphone's RTP sender. */
export interface SenderSample {
  /** Wall-clock time of the poll, in ms. */
  at: number;
  /** `getParameters().encodings[0].maxBitrate`, in bit/s, or null when unset. */
  maxBitrate: number | null;
  /** Audio bytes sent (`outbound-rtp`). */
  bytesSent: number;
  /** Packets resent on a NACK (`outbound-rtp`). */
  retransmittedPacketsSent: number;
}

/** An ICE connection state change of one of the page's RTCPeerConnections. */
export interface IceChange {
  /** Wall-clock time, in ms. */
  at: number;
  /** Which connection, in the order the page made them. */
  connection: number;
  /** The new `iceConnectionState`. */
  state: string;
}

/** What `__networkBench.drain()` returns: everything recorded since the last call. */
export interface PageRecord {
  inbound: InboundSample[];
  sender: SenderSample[];
  /** Wall-clock times at which the synthetic voice emitted a marker. */
  markersSent: number[];
  /** Wall-clock times at which a marker was detected in the received audio. */
  markersHeard: number[];
  /** ICE connection state changes of the page's transports. */
  ice: IceChange[];
  /** Errors the hook caught (worklet, stats), for the log. */
  errors: string[];
}

// The audio worklet module: `bench-voice` generates the microphone, `bench-marker` detects
// markers. The voice is a harmonic buzz (a glottal-like pulse train's first 12 harmonics) whose
// pitch glides between 110 and 190 Hz and whose loudness swings at a syllable rate, never silent,
// so Opus codes it as speech without DTX; a marker is 40 ms of a 1 kHz tone far louder than the
// voice. The detector reports a rise of the short-term level above half the marker's, at most
// once per `refractory` seconds.
const WORKLET = String.raw`
class BenchVoice extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.periodFrames = Math.round((options.processorOptions.markerPeriodMs / 1000) * sampleRate);
    this.markerFrames = Math.round(0.04 * sampleRate);
    this.frame = 0;
    this.phase = 0;
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i++) {
      const t = this.frame / sampleRate;
      const f0 = 150 + 40 * Math.sin(2 * Math.PI * 0.37 * t);
      this.phase += f0 / sampleRate;
      if (this.phase > 1) this.phase -= 1;
      let voice = 0;
      for (let h = 1; h <= 12; h++) voice += Math.sin(2 * Math.PI * h * this.phase) / h;
      const syllable = 0.55 + 0.45 * Math.sin(2 * Math.PI * 3.1 * t);
      let sample = 0.05 * syllable * voice;
      const inPeriod = this.frame % this.periodFrames;
      if (inPeriod === 0) this.port.postMessage('marker');
      if (inPeriod < this.markerFrames) sample += 0.6 * Math.sin(2 * Math.PI * 1000 * t);
      out[i] = sample;
      this.frame++;
    }
    return true;
  }
}
class BenchMarker extends AudioWorkletProcessor {
  constructor() {
    super();
    this.window = Math.round(0.0025 * sampleRate);
    this.sum = 0;
    this.count = 0;
    this.quietFor = 1e9;
    this.refractory = Math.round(0.3 * sampleRate);
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      this.sum += input[i] * input[i];
      this.count++;
      this.quietFor++;
      if (this.count === this.window) {
        const rms = Math.sqrt(this.sum / this.count);
        if (rms > 0.2 && this.quietFor > this.refractory) {
          this.port.postMessage('marker');
          this.quietFor = 0;
        }
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }
}
registerProcessor('bench-voice', BenchVoice);
registerProcessor('bench-marker', BenchMarker);
`;

/**
 * The init script of a page: installs `window.__networkBench` before the app runs. The worklet
 * module is loaded from a blob: URL, which the app's CSP (`script-src 'self'`) refuses, so the
 * page's context must bypass CSP.
 */
export function pageHook(config: PageHookConfig): string {
  return String.raw`(() => {
  const CONFIG = ${JSON.stringify(config)};
  const WORKLET_URL = URL.createObjectURL(
    new Blob([${JSON.stringify(WORKLET)}], { type: 'text/javascript' }),
  );
  const now = () => performance.timeOrigin + performance.now();
  const record = { inbound: [], sender: [], markersSent: [], markersHeard: [], ice: [], errors: [] };
  const fail = (what) => (error) => record.errors.push(what + ': ' + String(error && error.message || error));

  // SDP rewrites. Opus's payload types are read from the description's rtpmap lines.
  const opusTypes = (sdp) => [...sdp.matchAll(/^a=rtpmap:(\d+) opus\/48000/gim)].map((m) => m[1]);
  const rewrite = (sdp, type) => {
    let lines = sdp.split('\r\n');
    if (CONFIG.candidateRewrite) {
      const { from, to } = CONFIG.candidateRewrite;
      lines = lines.map((line) => {
        if (!line.startsWith('a=candidate:')) return line;
        const parts = line.split(' ');
        if (parts[4] === from) parts[4] = to;
        return parts.join(' ');
      });
    }
    const opus = opusTypes(sdp);
    if (CONFIG.uplinkNack && type === 'answer') {
      const out = [];
      for (const line of lines) {
        out.push(line);
        const pt = opus.find((p) => line.startsWith('a=rtpmap:' + p + ' '));
        if (pt && !lines.includes('a=rtcp-fb:' + pt + ' nack')) out.push('a=rtcp-fb:' + pt + ' nack');
      }
      lines = out;
    }
    return lines.join('\r\n');
  };

  const Native = window.RTCPeerConnection;
  const connections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      const connection = connections.push(this) - 1;
      this.addEventListener('iceconnectionstatechange', () => {
        record.ice.push({ at: now(), connection, state: this.iceConnectionState });
      });
    }
    setRemoteDescription(description) {
      if (description && description.sdp) {
        description = { type: description.type, sdp: rewrite(description.sdp, description.type) };
      }
      return super.setRemoteDescription(description);
    }
  };

  // The produce request of the microphone carries the codec's feedback to the voice node.
  if (CONFIG.uplinkNack) {
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      if (typeof data === 'string' && data.includes('"produce"')) {
        try {
          const message = JSON.parse(data);
          if (message.method === 'produce' && message.data && message.data.kind === 'audio') {
            for (const codec of message.data.rtpParameters.codecs) {
              if (codec.mimeType.toLowerCase() !== 'audio/opus') continue;
              codec.rtcpFeedback = codec.rtcpFeedback || [];
              if (!codec.rtcpFeedback.some((fb) => fb.type === 'nack' && !fb.parameter)) {
                codec.rtcpFeedback.push({ type: 'nack', parameter: '' });
              }
            }
            data = JSON.stringify(message);
          }
        } catch (error) {
          fail('produce rewrite')(error);
        }
      }
      return send.call(this, data);
    };
  }

  // The synthetic microphone, and a marker detector on every received audio track.
  const context = new AudioContext({ sampleRate: 48000 });
  const ready = context.audioWorklet.addModule(WORKLET_URL).then(() => context.resume());
  ready.catch(fail('worklet'));
  const sink = context.createGain();
  sink.gain.value = 0;
  sink.connect(context.destination);
  const detect = (track, into) => {
    ready.then(() => {
      const source = context.createMediaStreamSource(new MediaStream([track]));
      const detector = new AudioWorkletNode(context, 'bench-marker');
      detector.port.onmessage = () => into.push(now());
      source.connect(detector);
      detector.connect(sink);
    }).catch(fail('detector'));
  };
  const microphone = ready.then(() => {
    const voice = new AudioWorkletNode(context, 'bench-voice', {
      processorOptions: { markerPeriodMs: CONFIG.markerPeriodMs },
    });
    voice.port.onmessage = () => record.markersSent.push(now());
    const destination = context.createMediaStreamDestination();
    voice.connect(destination);
    voice.connect(sink);
    return destination.stream.getAudioTracks()[0];
  });
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio || constraints.video) return getUserMedia(constraints);
    return new MediaStream([(await microphone).clone()]);
  };
  const heard = new WeakSet();

  // The poll: the received audio's statistics and the microphone's sender, one poll at a time.
  let polling = false;
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      for (const connection of connections) {
        if (connection.connectionState === 'closed') continue;
        for (const receiver of connection.getReceivers()) {
          const track = receiver.track;
          if (!track || track.kind !== 'audio' || track.readyState !== 'live') continue;
          if (!heard.has(track)) {
            heard.add(track);
            detect(track, record.markersHeard);
          }
          const at = now();
          (await receiver.getStats()).forEach((s) => {
            if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
            record.inbound.push({
              at, statsAt: s.timestamp,
              totalSamplesReceived: s.totalSamplesReceived ?? 0,
              concealedSamples: s.concealedSamples ?? 0,
              concealmentEvents: s.concealmentEvents ?? 0,
              packetsReceived: s.packetsReceived ?? 0,
              packetsLost: s.packetsLost ?? 0,
              jitterBufferDelay: s.jitterBufferDelay ?? 0,
              jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
              fecPacketsReceived: s.fecPacketsReceived ?? 0,
              nackCount: s.nackCount ?? 0,
            });
          });
        }
        for (const sender of connection.getSenders()) {
          if (!sender.track || sender.track.kind !== 'audio') continue;
          const at = now();
          const encoding = sender.getParameters().encodings[0] || {};
          const sample = {
            at, maxBitrate: encoding.maxBitrate ?? null, bytesSent: 0, retransmittedPacketsSent: 0,
          };
          (await sender.getStats()).forEach((s) => {
            if (s.type !== 'outbound-rtp' || s.kind !== 'audio') return;
            sample.bytesSent = s.bytesSent ?? 0;
            sample.retransmittedPacketsSent = s.retransmittedPacketsSent ?? 0;
          });
          record.sender.push(sample);
        }
      }
    } catch (error) {
      fail('poll')(error);
    } finally {
      polling = false;
    }
  };
  setInterval(poll, CONFIG.pollMs);

  window.__networkBench = {
    offersRed: () => RTCRtpSender.getCapabilities('audio').codecs.some(
      (codec) => codec.mimeType.toLowerCase() === 'audio/red',
    ),
    drain() {
      return {
        inbound: record.inbound.splice(0),
        sender: record.sender.splice(0),
        markersSent: record.markersSent.splice(0),
        markersHeard: record.markersHeard.splice(0),
        ice: record.ice.splice(0),
        errors: record.errors.splice(0),
      };
    },
  };
})();`;
}
