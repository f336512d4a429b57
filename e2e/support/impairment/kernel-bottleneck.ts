/**
 * A rate cap with a real kernel queue, where the relay's userspace queue is not enough (for
 * example to see how a congestion controller reacts to a drop-tail queue the sender's own kernel
 * cannot bypass). This kernel has no `netem`, but it has network namespaces, veth pairs and the
 * `tbf` qdisc. By hand, as root:
 *
 *   ip netns add hearth-tbf
 *   ip link add hbh0 type veth peer name hbn0
 *   ip link set hbn0 netns hearth-tbf
 *   ip addr add 10.231.7.1/30 dev hbh0 && ip link set hbh0 up
 *   ip -n hearth-tbf addr add 10.231.7.2/30 dev hbn0
 *   ip -n hearth-tbf link set hbn0 up && ip -n hearth-tbf link set lo up
 *   # tc's kbit is 1000 bit/s; burst must hold at least one MTU; limit is the queue in bytes.
 *   tc qdisc add dev hbh0 root tbf rate 1000kbit burst 4096 limit 31250
 *   tc -n hearth-tbf qdisc add dev hbn0 root tbf rate 1000kbit burst 4096 limit 31250
 *   # Run the server inside: ip netns exec hearth-tbf <argv>; reach it at 10.231.7.2.
 *   ip link del hbh0; ip netns del hearth-tbf
 *
 * tbf shapes egress only, hence one qdisc on each end: hbh0 caps host to namespace, hbn0 the way
 * back. Loss, delay and jitter still come from a userspace relay in front (its target the
 * namespace address), since there is no netem. `createKernelBottleneck` does the above.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const REQUIRED_COMMANDS = ['/usr/sbin/ip', '/usr/sbin/tc'];

// tbf needs a bucket of at least one full-size frame, or it drops every such frame.
const MIN_BURST_BYTES = 4096;

let nextBottleneckIndex = 0;

/** A veth pair into a fresh network namespace, with tbf shaping both ways. */
export interface KernelBottleneck {
  /** The namespace's name. */
  namespace: string;
  /** The host end's address, which processes in the namespace reach the host at. */
  hostAddress: string;
  /** The namespace end's address, where a server started inside listens. */
  namespaceAddress: string;
  /** The argv that runs `argv` inside the namespace. */
  commandInNamespace(argv: readonly string[]): string[];
  /** Deletes the veth pair and the namespace; idempotent. */
  close(): Promise<void>;
}

/** Why a kernel bottleneck cannot be made here (not root, no ip or tc), or null if it can. */
export function kernelBottleneckUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces and qdiscs';
  for (const command of REQUIRED_COMMANDS) {
    try {
      accessSync(command, constants.X_OK);
    } catch {
      return `${command} is missing (Debian package iproute2)`;
    }
  }
  return null;
}

async function run(argv: readonly string[]): Promise<void> {
  const [command, ...args] = argv;
  await execFileAsync(command!, args, { timeout: 10_000 });
}

/**
 * Creates a namespace joined to the host by a veth pair whose two ends each carry a tbf qdisc of
 * `rateKbps` (1000 bit/s units) with a queue of `queueLimitBytes`. The caller closes it.
 */
export async function createKernelBottleneck(options: {
  rateKbps: number;
  queueLimitBytes: number;
  burstBytes?: number;
}): Promise<KernelBottleneck> {
  const unavailable = kernelBottleneckUnavailableReason();
  if (unavailable) throw new Error(`kernel bottleneck unavailable: ${unavailable}`);
  const index = nextBottleneckIndex++;
  const tag = `${process.pid % 100_000}x${index}`;
  const namespace = `hearth-tbf-${tag}`;
  const hostLink = `hbh${tag}`;
  const namespaceLink = `hbn${tag}`;
  // A /30 in 10.231.0.0/16 picked from the pid and index, so concurrent runs rarely collide.
  const slot = (process.pid * 7 + index) % 16_384;
  const base = `10.231.${slot >> 6}.${(slot & 63) * 4}`.split('.').map(Number);
  const hostAddress = [...base.slice(0, 3), base[3]! + 1].join('.');
  const namespaceAddress = [...base.slice(0, 3), base[3]! + 2].join('.');
  const tbf = [
    'root',
    'tbf',
    'rate',
    `${options.rateKbps}kbit`,
    'burst',
    String(Math.max(MIN_BURST_BYTES, options.burstBytes ?? 0)),
    'limit',
    String(options.queueLimitBytes),
  ];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    // Deleting one end deletes the pair; the namespace goes after it. Either may be gone already.
    await run(['ip', 'link', 'del', hostLink]).catch(() => undefined);
    await run(['ip', 'netns', 'del', namespace]).catch(() => undefined);
  };
  try {
    await run(['ip', 'netns', 'add', namespace]);
    await run(['ip', 'link', 'add', hostLink, 'type', 'veth', 'peer', 'name', namespaceLink]);
    await run(['ip', 'link', 'set', namespaceLink, 'netns', namespace]);
    await run(['ip', 'addr', 'add', `${hostAddress}/30`, 'dev', hostLink]);
    await run(['ip', 'link', 'set', hostLink, 'up']);
    await run([
      'ip',
      '-n',
      namespace,
      'addr',
      'add',
      `${namespaceAddress}/30`,
      'dev',
      namespaceLink,
    ]);
    await run(['ip', '-n', namespace, 'link', 'set', namespaceLink, 'up']);
    await run(['ip', '-n', namespace, 'link', 'set', 'lo', 'up']);
    await run(['tc', 'qdisc', 'add', 'dev', hostLink, ...tbf]);
    await run(['tc', '-n', namespace, 'qdisc', 'add', 'dev', namespaceLink, ...tbf]);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    namespace,
    hostAddress,
    namespaceAddress,
    commandInNamespace: (argv) => ['ip', 'netns', 'exec', namespace, ...argv],
    close,
  };
}
