/**
 * The RTCP a bridge receiver sends back to the voice node: receiver reports (RFC 3550 6.4.2),
 * generic NACKs (RFC 4585 6.2.1) and picture loss indications (RFC 4585 6.3.1).
 */

const RTCP_VERSION_BITS = 0x80;
const RECEIVER_REPORT = 201;
const TRANSPORT_FEEDBACK = 205;
const PAYLOAD_FEEDBACK = 206;
const GENERIC_NACK_FORMAT = 1;
const PLI_FORMAT = 1;
const REPORT_BLOCK_BYTES = 24;
// One NACK item covers a packet id and the 16 packets after it.
const NACK_ITEM_SPAN = 17;
const SEQUENCE_MASK = 0xffff;

/** What a receiver report says about one sender's stream. */
export interface ReceptionReport {
  /** The SSRC reported on. */
  readonly ssrc: number;
  /** Packets lost since the previous report over packets expected, 0..1. */
  readonly fractionLost: number;
  /** Packets lost since reception began (may be negative with duplicates). */
  readonly cumulativeLost: number;
  /** Highest sequence number received, with its rollovers in the upper 16 bits. */
  readonly extendedHighestSequence: number;
  /** Interarrival jitter in RTP timestamp units. */
  readonly jitter: number;
}

/** A receiver report with one block per stream, from `senderSsrc`. */
export function receiverReport(senderSsrc: number, reports: readonly ReceptionReport[]): Buffer {
  const packet = Buffer.alloc(8 + reports.length * REPORT_BLOCK_BYTES);
  writeHeader(packet, reports.length, RECEIVER_REPORT);
  packet.writeUInt32BE(senderSsrc >>> 0, 4);
  reports.forEach((report, index) => {
    const offset = 8 + index * REPORT_BLOCK_BYTES;
    packet.writeUInt32BE(report.ssrc >>> 0, offset);
    packet[offset + 4] = Math.min(255, Math.max(0, Math.floor(report.fractionLost * 256)));
    // Cumulative loss is a signed 24-bit number, clamped.
    const lost = Math.min(0x7fffff, Math.max(-0x800000, Math.trunc(report.cumulativeLost)));
    packet.writeIntBE(lost, offset + 5, 3);
    packet.writeUInt32BE(report.extendedHighestSequence >>> 0, offset + 8);
    packet.writeUInt32BE(
      Math.min(0xffff_ffff, Math.max(0, Math.round(report.jitter))),
      offset + 12,
    );
    // No sender report is read back, so no round-trip time: LSR and DLSR stay 0.
  });
  return packet;
}

/** A generic NACK asking `mediaSsrc`'s sender to resend `sequences` (16-bit numbers). */
export function genericNack(
  senderSsrc: number,
  mediaSsrc: number,
  sequences: readonly number[],
): Buffer {
  const sorted = [...new Set(sequences.map((sequence) => sequence & SEQUENCE_MASK))].sort(
    (a, b) => a - b,
  );
  const items: { id: number; mask: number }[] = [];
  for (const sequence of sorted) {
    const last = items.at(-1);
    const distance = last ? (sequence - last.id) & SEQUENCE_MASK : NACK_ITEM_SPAN;
    if (last && distance > 0 && distance < NACK_ITEM_SPAN) last.mask |= 1 << (distance - 1);
    else items.push({ id: sequence, mask: 0 });
  }
  const packet = Buffer.alloc(12 + items.length * 4);
  writeHeader(packet, GENERIC_NACK_FORMAT, TRANSPORT_FEEDBACK);
  packet.writeUInt32BE(senderSsrc >>> 0, 4);
  packet.writeUInt32BE(mediaSsrc >>> 0, 8);
  items.forEach(({ id, mask }, index) => {
    packet.writeUInt16BE(id, 12 + index * 4);
    packet.writeUInt16BE(mask, 14 + index * 4);
  });
  return packet;
}

/** A picture loss indication: `mediaSsrc`'s sender should send a key frame. */
export function pictureLossIndication(senderSsrc: number, mediaSsrc: number): Buffer {
  const packet = Buffer.alloc(12);
  writeHeader(packet, PLI_FORMAT, PAYLOAD_FEEDBACK);
  packet.writeUInt32BE(senderSsrc >>> 0, 4);
  packet.writeUInt32BE(mediaSsrc >>> 0, 8);
  return packet;
}

// Version 2, no padding, the count or format in the low 5 bits, and the length in 32-bit words
// minus one.
function writeHeader(packet: Buffer, countOrFormat: number, type: number): void {
  packet[0] = RTCP_VERSION_BITS | countOrFormat;
  packet[1] = type;
  packet.writeUInt16BE(packet.length / 4 - 1, 2);
}
