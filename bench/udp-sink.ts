// A discard receiver for the capacity benchmark, in its own process so that reading tens of
// thousands of packets per second does not slow the benchmark's RTP senders. It binds the number
// of sockets given in argv, tells the parent their ports, and reports packet counts on request.
import dgram from 'node:dgram';

const socketCount = Number(process.argv[2] ?? '4');
let packets = 0;
const sockets = await Promise.all(
  Array.from({ length: socketCount }, async () => {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 });
    socket.on('message', (packet) => {
      // Count RTP only; RTCP (packet types 200-207) shares the port.
      if (packet.length >= 12 && !(packet[1]! >= 200 && packet[1]! <= 207)) packets++;
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    return socket;
  }),
);
process.send!({ ports: sockets.map((socket) => socket.address().port) });
process.on('message', (message: { command: string }) => {
  if (message.command === 'count') process.send!({ packets });
  if (message.command === 'reset') packets = 0;
  if (message.command === 'stop') {
    for (const socket of sockets) socket.close();
    process.disconnect();
  }
});
