import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Debian's nginx binary. */
export const NGINX_BIN = '/usr/sbin/nginx';
// nginx runs under util-linux's setpriv, which asks the kernel to send it SIGTERM (nginx's fast
// shutdown, workers included) when the process that started it dies, even by SIGKILL.
const SETPRIV = '/usr/bin/setpriv';
const PREFIX_NAME = 'hearth-nginx-';
// nginx's graceful shutdown waits for requests in flight; after this it is killed.
const STOP_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 10_000;
// A port found free can be taken before nginx binds it; starting again on a new port fixes that.
const START_ATTEMPTS = 3;

/** Where one nginx instance keeps its files, all inside a fresh temp prefix. */
export interface NginxLayout {
  /** The prefix passed to `nginx -p`; removed by `stop()`. */
  readonly prefix: string;
  /** Loopback port found free for the instance to listen on. */
  readonly port: number;
  /** The config file nginx is started with. */
  readonly configPath: string;
  /** Master process id file. */
  readonly pidFile: string;
  /** Error log; also receives messages logged before the config is read (`nginx -e`). */
  readonly errorLogPath: string;
  /** Access log. */
  readonly accessLogPath: string;
  /** Cache directory; nginx creates it. */
  readonly cacheDirectory: string;
  /** Existing directory under which nginx creates its temp directories. */
  readonly tempDirectory: string;
}

function createLayout(port: number): NginxLayout {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX_NAME));
  // mkdtemp makes the prefix 0700. Started as root, nginx runs its workers as `nobody`, and
  // they must be able to walk into the prefix to reach the cache files: with 0700 every cached
  // response fails with "open() ... failed (13: Permission denied)" and a 500.
  fs.chmodSync(prefix, 0o755);
  const layout: NginxLayout = {
    prefix,
    port,
    configPath: path.join(prefix, 'nginx.conf'),
    pidFile: path.join(prefix, 'nginx.pid'),
    errorLogPath: path.join(prefix, 'logs', 'error.log'),
    accessLogPath: path.join(prefix, 'logs', 'access.log'),
    cacheDirectory: path.join(prefix, 'cache'),
    tempDirectory: path.join(prefix, 'temp'),
  };
  // nginx creates only the last component of a temp or cache path, so parents must exist.
  fs.mkdirSync(path.dirname(layout.errorLogPath), { recursive: true });
  fs.mkdirSync(layout.tempDirectory, { recursive: true });
  return layout;
}

// The config may hold the playback signing secret, so only the owner reads it: nginx's master,
// which runs as the same user, reads the config before its workers drop privileges.
function writeConfig(layout: NginxLayout, render: (layout: NginxLayout) => string): void {
  fs.writeFileSync(layout.configPath, render(layout), { mode: 0o600 });
}

function nginxArgs(layout: NginxLayout): string[] {
  // -e sends the messages logged before the config's error_log is read to the prefix too.
  return ['-p', `${layout.prefix}/`, '-c', layout.configPath, '-e', layout.errorLogPath];
}

/** Asks the kernel for a free loopback TCP port. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readIfExists(file: string): string {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
}

/** Process ids whose parent is `pid`, read from /proc (nginx workers of a master). */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readIfExists(`/proc/${entry}/stat`);
    // The command name in parentheses may hold spaces; the parent id is the second field after it.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) children.push(Number(entry));
  }
  return children;
}

/** True while a process with this id exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  const stat = readIfExists(`/proc/${pid}/stat`);
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

/**
 * Master processes of nginx instances this code started (their prefix is a `hearth-nginx-`
 * folder) whose config listens on `port`: edges left behind by an earlier run.
 */
export function staleEdgePids(port: number): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    // A running nginx master rewrites its command line into one space-separated title.
    const argv = readIfExists(`/proc/${entry}/cmdline`).split(/[\0 ]+/);
    const config = argv[argv.indexOf('-c') + 1];
    if (!argv.some((word) => word.endsWith('nginx')) || !config?.includes(PREFIX_NAME)) continue;
    if (readIfExists(config).includes(`listen 127.0.0.1:${port};`)) found.push(Number(entry));
  }
  return found;
}

/**
 * Makes `port` free for a new edge: an edge an earlier run left on it is stopped (never used as
 * if it were new); any other program on it is an error. Resolves with the stale masters stopped.
 */
export async function takeOverPort(port: number): Promise<number[]> {
  if (!(await canConnect(port))) return [];
  const stale = staleEdgePids(port);
  if (stale.length === 0) throw new Error(`port ${port} is in use by another program`);
  for (const pid of stale) {
    const workers = childPids(pid);
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (isRunning(pid) && Date.now() < deadline) await delay(50);
    for (const leftover of [pid, ...workers].filter(isRunning)) process.kill(leftover, 'SIGKILL');
  }
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while ((await canConnect(port)) && Date.now() < deadline) await delay(50);
  return stale;
}

/** Result of `nginx -t` on a config. */
export interface NginxConfigTest {
  /** True when nginx accepted the config. */
  readonly ok: boolean;
  /** What nginx printed. */
  readonly output: string;
}

/** Runs `nginx -t` on the config `render` returns for a fresh prefix, then removes the prefix. */
export async function testNginxConfig(
  render: (layout: NginxLayout) => string,
): Promise<NginxConfigTest> {
  const layout = createLayout(await freePort());
  try {
    writeConfig(layout, render);
    const result = spawnSync(NGINX_BIN, ['-t', ...nginxArgs(layout)], {
      encoding: 'utf8',
      timeout: START_TIMEOUT_MS,
    });
    return {
      ok: result.status === 0,
      output: `${result.stderr}${readIfExists(layout.errorLogPath)}`,
    };
  } finally {
    fs.rmSync(layout.prefix, { recursive: true, force: true });
  }
}

/**
 * A real nginx (Debian's /usr/sbin/nginx) started in the foreground from a fresh temp prefix
 * with a config the caller renders: the embedded profile's CDN edge, and the tests' edges.
 */
export class NginxProcess {
  /** Files and port of this instance. */
  readonly layout: NginxLayout;
  /** Masters of stale edges on the same port that were stopped before this one started. */
  replacedStalePids: number[] = [];
  #child: ChildProcess;
  #exit: Promise<void>;
  #exited = false;
  #stderr = '';
  #stopping: Promise<void> | undefined;

  private constructor(layout: NginxLayout, child: ChildProcess) {
    this.layout = layout;
    this.#child = child;
    this.#exit = new Promise((resolve) => {
      child.once('exit', () => {
        this.#exited = true;
        resolve();
      });
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.#stderr += chunk;
    });
  }

  /**
   * Starts nginx with the config `render` returns; the config must keep nginx in the
   * foreground (`daemon off`) and use the layout's paths. Resolves once the port accepts.
   * Without `port`, a free loopback port is picked; a given port held by an edge of an earlier
   * run is taken over (`takeOverPort`). nginx dies with this process.
   */
  static async start(
    render: (layout: NginxLayout) => string,
    options: { port?: number } = {},
  ): Promise<NginxProcess> {
    let lastError: Error | undefined;
    const attempts = options.port === undefined ? START_ATTEMPTS : 1;
    const replaced = options.port === undefined ? [] : await takeOverPort(options.port);
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      const layout = createLayout(options.port ?? (await freePort()));
      writeConfig(layout, render);
      const child = spawn(
        SETPRIV,
        ['--pdeathsig', 'SIGTERM', '--', NGINX_BIN, ...nginxArgs(layout)],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const nginx = new NginxProcess(layout, child);
      nginx.replacedStalePids = replaced;
      if (await nginx.#waitUntilListening()) return nginx;
      const log = nginx.errorLog();
      await nginx.stop();
      lastError = new Error(`nginx did not start:\n${log}`);
      if (!log.includes('Address already in use')) break;
    }
    throw lastError ?? new Error('nginx did not start');
  }

  async #waitUntilListening(): Promise<boolean> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline && !this.#exited) {
      // The port answering is not enough: it must be this nginx that answers, still running.
      if ((await canConnect(this.layout.port)) && !this.#exited) return true;
      await delay(50);
    }
    return false;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://127.0.0.1:${this.layout.port}`;
  }

  /** Process id of the nginx master (or of the single process with master_process off). */
  get pid(): number {
    if (this.#child.pid === undefined) throw new Error('nginx has no process id');
    return this.#child.pid;
  }

  /** True once the nginx process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The error log and anything nginx wrote to stderr. */
  errorLog(): string {
    return `${this.#stderr}${readIfExists(this.layout.errorLogPath)}`;
  }

  /**
   * Stops nginx gracefully (SIGQUIT), kills it and its workers (SIGKILL) if it is still running
   * after a timeout, and removes the prefix. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (!this.#exited) {
      this.#child.kill('SIGQUIT');
      const stopped = await Promise.race([
        this.#exit.then(() => true),
        delay(STOP_TIMEOUT_MS).then(() => false),
      ]);
      if (!stopped) {
        // Workers outlive a killed master, so they are collected before it goes.
        const workers = childPids(this.pid);
        this.#child.kill('SIGKILL');
        for (const worker of workers.filter(isRunning)) process.kill(worker, 'SIGKILL');
        await this.#exit;
      }
    }
    fs.rmSync(this.layout.prefix, { recursive: true, force: true });
  }
}
