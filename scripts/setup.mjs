// Installs whatever is missing before `npm start` or `npm test`: Debian packages (when root),
// npm dependencies, the mediasoup worker (built once, cached outside the checkout) and the web
// build. Each step checks first, so re-runs finish in about a second.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const forTests = process.argv.includes('--test');

// Build tools and libraries for the mediasoup worker (ENVIRONMENT.md lists why each is needed),
// ffmpeg for the transcoding ladder, nginx for the CDN edge and coturn for TURN; then what the
// test suite and benchmarks drive for real: nginx-rtmp is the comparison in bench:stream,
// PostgreSQL and Redis back the production stores, nginx's stream module balances RTMP over two
// ingest nodes, wrk loads the api in bench:api, and Prometheus (with promtool) checks and
// evaluates the alert rules and dashboard of deploy/ against a running platform.
const runtimePackages = [
  'ffmpeg',
  'nginx',
  'coturn',
  'meson',
  'ninja-build',
  'pkg-config',
  'g++',
  'libssl-dev',
  'libuv1-dev',
  'libsrtp2-dev',
  'libusrsctp-dev',
  'libabsl-dev',
  'nlohmann-json3-dev',
];
const testPackages = [
  'chromium',
  'libnginx-mod-rtmp',
  'libnginx-mod-stream',
  'postgresql',
  'redis-server',
  'wrk',
  'prometheus',
];

// Debian packages that enable a system-wide service listening on every interface, and start it
// as they install. The platform runs its own coturn on loopback and the tests their own
// Prometheus, so the system ones must never run. `initScript` is given where the package's init
// script starts its daemon without systemd, so that it is stopped again.
const SYSTEM_SERVICES = [
  { name: 'coturn', unit: 'coturn.service' },
  { name: 'prometheus', unit: 'prometheus.service', initScript: '/etc/init.d/prometheus' },
];

function log(message) {
  console.log(`[setup] ${message}`);
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.status}`);
  }
}

function missingDebianPackages(packages) {
  const result = spawnSync(
    'dpkg-query',
    ['-W', '-f=${Package} ${db:Status-Status}\n', ...packages],
    {
      encoding: 'utf8',
    },
  );
  const installed = new Set(
    result.stdout
      .split('\n')
      .filter((line) => line.endsWith(' installed'))
      .map((line) => line.split(' ')[0].split(':')[0]),
  );
  return packages.filter((name) => !installed.has(name));
}

function ensureDebianPackages() {
  const wanted = forTests ? [...runtimePackages, ...testPackages] : runtimePackages;
  const missing = missingDebianPackages(wanted);
  if (missing.length === 0) {
    log('Debian packages: present');
    return;
  }
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing Debian packages: ${missing.join(' ')}\n` +
        `install them with: sudo apt-get install -y ${missing.join(' ')}`,
    );
  }
  log(`Debian packages: installing ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-q'], { env });
  const services = SYSTEM_SERVICES.filter((service) => missing.includes(service.name));
  // Each unit is masked while its package installs (the package does not lift a mask it did not
  // set), then disabled and unmasked.
  const systemd = fs.existsSync('/run/systemd/system');
  if (systemd) for (const { unit } of services) run('systemctl', ['mask', unit]);
  try {
    run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env });
  } finally {
    if (systemd) for (const { unit } of services) run('systemctl', ['unmask', unit]);
  }
  for (const { name, unit, initScript } of services) {
    // Without systemd, coturn's init script starts nothing (it waits for TURNSERVER_ENABLED=1);
    // Prometheus's starts it, and its stop succeeds whether it runs or not.
    if (!systemd && initScript) run(initScript, ['stop']);
    if (fs.existsSync('/usr/bin/systemctl')) {
      // Works without a running systemd too, so a machine booted with it later starts neither.
      run('systemctl', ['disable', unit]);
    }
    log(`${name}: system service disabled (the platform and tests start their own on loopback)`);
  }
}

function hashFiles(paths) {
  const hash = createHash('sha256');
  const visit = (entry) => {
    if (!fs.existsSync(entry)) return;
    const stat = fs.statSync(entry);
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(entry).sort()) {
        if (name === 'node_modules' || name === 'dist') continue;
        visit(path.join(entry, name));
      }
    } else {
      hash.update(path.relative(root, entry));
      hash.update(fs.readFileSync(entry));
    }
  };
  for (const entry of paths) visit(path.join(root, entry));
  return hash.digest('hex');
}

function ensureNpmDependencies() {
  const stamp = path.join(root, 'node_modules', '.hearth-lock-hash');
  const lockHash = hashFiles(['package-lock.json']);
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === lockHash) {
    log('npm dependencies: up to date');
    return;
  }
  // `npm ci` is not used: npm 11 leaves other platforms' optional packages (rollup's native
  // builds) out of the lockfile it writes and then refuses that lockfile in `npm ci`.
  // `npm install` with the committed lockfile installs the same tree and leaves the file as is.
  log('npm dependencies: installing');
  run('npm', ['install', '--no-audit', '--no-fund']);
  fs.writeFileSync(stamp, lockHash);
}

async function ensureWorker() {
  const { ensureMediasoupWorker } = await import('./mediasoup-worker.mjs');
  await ensureMediasoupWorker({ log: (message) => log(`mediasoup worker: ${message}`) });
}

function ensureWebBuild() {
  const stamp = path.join(root, 'web', 'dist', '.build-hash');
  const sourceHash = hashFiles(['package-lock.json', 'packages/protocol/src', 'web']);
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === sourceHash) {
    log('web build: up to date');
    return;
  }
  log('web build: building');
  run('npm', ['run', 'build', '-w', 'web']);
  fs.writeFileSync(stamp, sourceHash);
}

const started = performance.now();
try {
  ensureDebianPackages();
  ensureNpmDependencies();
  await ensureWorker();
  ensureWebBuild();
  log(`ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  console.error(`[setup] failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
