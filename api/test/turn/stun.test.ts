import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  StunAttribute,
  StunMethod,
  attributeOf,
  decodeErrorCode,
  decodeStunMessage,
  decodeXorAddress,
  encodeStunRequest,
  longTermKey,
  stunMessageLength,
} from '../../src/turn/stun';

// RFC 5769 §2.2 and §2.3: the transaction id of the sample responses and their XOR-MAPPED-ADDRESS
// values for 192.0.2.1:32853 and [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const RFC5769_TRANSACTION = Buffer.from('b7e7a701bc34d686fa87dfae', 'hex');
const RFC5769_IPV4 = Buffer.from('0001a147e112a643', 'hex');
const RFC5769_IPV6 = Buffer.from('0002a1470113a9faa5d3f179bc25f4b5bed2b9d9', 'hex');

function response(kind: 'success' | 'error', attributes: Buffer): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt16BE(kind === 'success' ? 0x0103 : 0x0113, 0);
  header.writeUInt16BE(attributes.length, 2);
  header.writeUInt32BE(0x2112a442, 4);
  RFC5769_TRANSACTION.copy(header, 8);
  return Buffer.concat([header, attributes]);
}

describe('STUN messages', () => {
  it('decodeXorAddress() reads the RFC 5769 sample addresses, IPv4 and IPv6', () => {
    expect(decodeXorAddress(RFC5769_IPV4, RFC5769_TRANSACTION)).toEqual({
      address: '192.0.2.1',
      port: 32853,
    });
    expect(decodeXorAddress(RFC5769_IPV6, RFC5769_TRANSACTION)).toEqual({
      address: '2001:db8:1234:5678:11:2233:4455:6677',
      port: 32853,
    });
    expect(decodeXorAddress(RFC5769_IPV4.subarray(0, 7), RFC5769_TRANSACTION)).toBeNull();
    expect(
      decodeXorAddress(Buffer.from('0003a147e112a643', 'hex'), RFC5769_TRANSACTION),
    ).toBeNull();
  });

  it('encodeStunRequest() writes an Allocate whose MESSAGE-INTEGRITY covers the header and attributes', () => {
    const key = longTermKey('1700000000:u', 'hearth', 'pw');
    const transport = { type: StunAttribute.requestedTransport, value: Buffer.from([17, 0, 0, 0]) };
    const realm = { type: StunAttribute.realm, value: Buffer.from('hearth') };
    const message = encodeStunRequest(
      StunMethod.allocate,
      RFC5769_TRANSACTION,
      [transport, realm],
      key,
    );
    const decoded = decodeStunMessage(message)!;
    expect(decoded.method).toBe(StunMethod.allocate);
    expect(decoded.class).toBe('request');
    expect(decoded.transactionId).toEqual(RFC5769_TRANSACTION);
    expect(decoded.attributes.map((attribute) => attribute.type)).toEqual([
      StunAttribute.requestedTransport,
      StunAttribute.realm,
      StunAttribute.messageIntegrity,
    ]);
    expect(attributeOf(decoded, StunAttribute.realm)).toEqual(Buffer.from('hearth'));
    // Realm "hearth" is padded to 8 bytes; the integrity is over everything before it, with the
    // header's length already counting the integrity attribute.
    expect(message.readUInt16BE(2)).toBe(8 + 12 + 24);
    const signed = message.subarray(0, message.length - 24);
    expect(attributeOf(decoded, StunAttribute.messageIntegrity)).toEqual(
      createHmac('sha1', key).update(signed).digest(),
    );
  });

  it('decodeStunMessage() reads error responses and their ERROR-CODE', () => {
    const errorCode = Buffer.from('0009001000000401556e617574686f72697a6564', 'hex');
    const decoded = decodeStunMessage(response('error', errorCode))!;
    expect(decoded.class).toBe('error');
    expect(decoded.method).toBe(StunMethod.allocate);
    expect(decodeErrorCode(attributeOf(decoded, StunAttribute.errorCode)!)).toEqual({
      code: 401,
      reason: 'Unauthorized',
    });
    expect(decodeErrorCode(Buffer.from([0, 0, 9, 99]))).toBeNull();
  });

  it('decodeStunMessage() returns null for anything malformed and never throws', () => {
    const valid = response(
      'success',
      Buffer.concat([Buffer.from('00200008', 'hex'), RFC5769_IPV4]),
    );
    expect(decodeStunMessage(valid)).not.toBeNull();
    const broken = [
      Buffer.alloc(0),
      valid.subarray(0, 19),
      valid.subarray(0, valid.length - 1),
      Buffer.concat([valid, Buffer.alloc(4)]),
      // Wrong magic cookie; top bits set; attribute running past the end; length not a multiple of 4.
      Buffer.from(valid).fill(0, 4, 8),
      Buffer.concat([Buffer.from([0xc1]), valid.subarray(1)]),
      response('success', Buffer.from('00200010000100000000000000000000', 'hex').subarray(0, 12)),
      response('success', Buffer.from('002000', 'hex')),
    ];
    for (const data of broken) expect(decodeStunMessage(data)).toBeNull();
    // Random bytes, and a valid message with one attribute byte overwritten.
    for (let round = 0; round < 5000; round++) {
      const data =
        round % 2 === 0
          ? randomBytes(round % 64)
          : Buffer.from(valid).fill(randomBytes(1)[0]!, 20 + (round % 12), 21 + (round % 12));
      expect(() => decodeStunMessage(data)).not.toThrow();
      expect(() => stunMessageLength(data)).not.toThrow();
    }
  });

  it('stunMessageLength() frames messages on a stream: null while short, -1 for non-STUN', () => {
    const valid = response(
      'success',
      Buffer.concat([Buffer.from('00200008', 'hex'), RFC5769_IPV4]),
    );
    expect(stunMessageLength(valid.subarray(0, 10))).toBeNull();
    expect(stunMessageLength(valid)).toBe(valid.length);
    expect(stunMessageLength(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe(-1);
    const huge = Buffer.from(valid);
    huge.writeUInt16BE(0xfffc, 2);
    expect(stunMessageLength(huge)).toBe(-1);
  });
});
