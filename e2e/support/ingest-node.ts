import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

const INGEST_MAIN = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../stream-ingest/src/main.ts',
);

// The log line the node prints once it listens, parsed like any input from another process.
const listeningSchema = z.object({
  msg: z.literal('ingest node listening'),
  rtmpPort: z.number().int(),
  httpPort: z.number().int(),
});

/** One ingest node process (`npm run ingest-node`) for a test or a benchmark. */
export class IngestNodeProcess {
  /** Its id in the cluster. */
  readonly nodeId: string;
  /** RTMP port it listens on. */
  readonly rtmpPort: number;
  /** Port of its `/health` and `/metrics`. */
  readonly httpPort: number;
  /** Every JSON log line it printed, as text. */
  readonly logLines: string[];
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;

  private constructor(
    nodeId: string,
    child: ChildProcess,
    ports: { rtmpPort: number; httpPort: number },
    logLines: string[],
    exited: Promise<number | null>,
  ) {
    this.nodeId = nodeId;
    this.#child = child;
    this.rtmpPort = ports.rtmpPort;
    this.httpPort = ports.httpPort;
    this.logLines = logLines;
    this.#exited = exited;
  }

  /**
   * Starts `ingest-a` and `ingest-b`, one after the other, each in its own folder under
   * `workDir`, and adds them to `nodes` as they start (so a failed start still leaves the first
   * one to be stopped).
   */
  static async startTwo(
    nodes: IngestNodeProcess[],
    options: {
      apiUrl: string;
      clusterSecret: string;
      workDir: string;
      env: Record<string, string>;
    },
  ): Promise<void> {
    for (const nodeId of ['ingest-a', 'ingest-b']) {
      nodes.push(
        await IngestNodeProcess.start({
          ...options,
          nodeId,
          workDir: path.join(options.workDir, nodeId),
        }),
      );
    }
  }

  /** Starts a node on free ports and resolves once it listens. */
  static async start(options: {
    nodeId: string;
    apiUrl: string;
    clusterSecret: string;
    workDir: string;
    /** Further `INGEST_*` and `S3_*` settings. */
    env: Record<string, string>;
  }): Promise<IngestNodeProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', INGEST_MAIN], {
      env: {
        ...process.env,
        INGEST_NODE_ID: options.nodeId,
        INGEST_API_URL: options.apiUrl,
        INGEST_CLUSTER_SECRET: options.clusterSecret,
        INGEST_RTMP_PORT: '0',
        INGEST_HTTP_PORT: '0',
        INGEST_WORK_DIR: options.workDir,
        INGEST_LOG_LEVEL: 'info',
        INGEST_HEARTBEAT_MS: '250',
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logLines: string[] = [];
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const ports = await new Promise<{ rtmpPort: number; httpPort: number }>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        logLines.push(line);
        try {
          const listening = listeningSchema.safeParse(JSON.parse(line));
          if (listening.success) resolve(listening.data);
        } catch {
          // Not a JSON line.
        }
      });
      child.stderr!.on('data', (data: Buffer) => logLines.push(String(data)));
      void exited.then((code) => reject(new Error(`ingest node exited with ${code} at start`)));
    });
    return new IngestNodeProcess(options.nodeId, child, ports, logLines, exited);
  }

  /** Process id. */
  get pid(): number {
    return this.#child.pid!;
  }

  /** Sends a signal. */
  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** Resolves with the exit code once the process ends. */
  exited(): Promise<number | null> {
    return this.#exited;
  }
}
