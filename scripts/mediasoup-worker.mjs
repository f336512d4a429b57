import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');
const MEDIASOUP_DIR = path.join(REPO_ROOT, 'node_modules', 'mediasoup');
const WORKER_SOURCE_DIR = path.join(MEDIASOUP_DIR, 'worker');
const INSTALLED_BINARY = path.join(WORKER_SOURCE_DIR, 'out', 'Release', 'mediasoup-worker');
const BUILD_OUTPUT_TAIL_LINES = 40;

// Commands the build runs, mapped to the Debian packages that provide them.
const BUILD_TOOLS = {
  meson: 'meson',
  ninja: 'ninja-build',
  'pkg-config': 'pkg-config',
  'g++': 'g++',
};

// One pkg-config module per Debian package the shims below link against.
const SYSTEM_LIBRARIES = {
  'libssl-dev': 'openssl',
  'libuv1-dev': 'libuv',
  'libsrtp2-dev': 'libsrtp2',
  'libusrsctp-dev': 'usrsctp',
  'libabsl-dev': 'absl_flat_hash_map',
  'nlohmann-json3-dev': 'nlohmann_json',
};

// Each shim replaces a subprojects/<name>.wrap that would otherwise download and build a vendored
// copy of the library. It exposes the variables the worker's meson.build files read, backed by
// the system library. Variables the worker links with link_whole are empty lists because system
// libraries are shared and come in through the dependency instead.
const SHIMS = {
  // The worker reads openssl_dep plus the static libcrypto_lib and libssl_lib.
  openssl: {
    build: `openssl_dep = dependency('openssl')
libcrypto_lib = []
libssl_lib = []
`,
  },
  // The worker reads nlohmann_json_dep; the system package is header-only like the vendored one.
  nlohmann_json: {
    build: `nlohmann_json_dep = dependency('nlohmann_json')
`,
  },
  // The worker reads libuv_dep and the static library libuv, and passes test/benchmark options.
  libuv: {
    build: `libuv_dep = dependency('libuv')
libuv = []
`,
    options: `option('build_tests', type: 'boolean', value: false)
option('build_benchmarks', type: 'boolean', value: false)
`,
  },
  // The worker includes <srtp.h> while Debian installs it under srtp2/, and the pkg-config file
  // does not add that directory, so the shim adds it to the dependency itself.
  libsrtp2: {
    build: `srtp = dependency('libsrtp2')
libsrtp2_dep = declare_dependency(
  dependencies: srtp,
  include_directories: include_directories(srtp.get_variable(pkgconfig: 'includedir') / 'srtp2'),
)
libsrtp2 = []
`,
    options: `option(
  'crypto-library',
  type: 'combo',
  choices: ['none', 'openssl', 'nss', 'mbedtls'],
  value: 'openssl',
)
option('crypto-library-kdf', type: 'feature', value: 'auto')
option('tests', type: 'feature', value: 'auto')
`,
  },
  // The worker reads usrsctp_dep and the static library usrsctp, and disables the sample programs.
  usrsctp: {
    build: `usrsctp_dep = dependency('usrsctp')
usrsctp = []
`,
    options: `option('sctp_build_programs', type: 'boolean', value: false)
`,
  },
  // The worker and its bundled libwebrtc read three grouped abseil dependencies; the system
  // package ships one pkg-config module per abseil component instead.
  'abseil-cpp': {
    build: `absl_container_dep = declare_dependency(
  dependencies: [
    dependency('absl_flat_hash_map'),
    dependency('absl_flat_hash_set'),
    dependency('absl_btree'),
    dependency('absl_inlined_vector'),
  ],
)
absl_container_lib = []
absl_strings_dep = dependency('absl_strings')
absl_types_dep = declare_dependency(
  dependencies: [dependency('absl_optional'), dependency('absl_memory')],
)
`,
  },
  // Catch2 is only used by the worker's test executables, which are not built here.
  catch2: {
    build: `catch2_dep = declare_dependency()
`,
  },
};

/** Points node_modules/mediasoup at a cached system-library worker build, building it if needed. */
export async function ensureMediasoupWorker({ log }) {
  const packageJson = await fs.readFile(path.join(MEDIASOUP_DIR, 'package.json'), 'utf8');
  const { version } = JSON.parse(packageJson);
  const cachedBinary = path.join(cacheDir(), 'mediasoup-worker', version, 'mediasoup-worker');

  if (!(await isExecutable(cachedBinary))) {
    await buildWorker(version, cachedBinary, log);
  } else if (!(await sharedLibrariesResolve(cachedBinary))) {
    // The build links Debian's shared libraries; after an upgrade that replaced one of them the
    // cached binary cannot start, so it is built again against the current ones.
    log(`mediasoup-worker ${version}: cached build misses a shared library, rebuilding`);
    await buildWorker(version, cachedBinary, log);
  }

  const relinked = await linkInstalledBinary(cachedBinary);
  log(`mediasoup-worker ${version}: ${relinked ? 'linked' : 'using'} cached build ${cachedBinary}`);
}

function cacheDir() {
  if (process.env.HEARTH_CACHE_DIR) {
    return process.env.HEARTH_CACHE_DIR;
  }
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'hearth');
}

async function isExecutable(file) {
  try {
    await fs.access(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// `ldd` lists every shared library the binary needs; "not found" marks one that is gone.
function sharedLibrariesResolve(binary) {
  return new Promise((resolve) => {
    const child = spawn('ldd', [binary], { stdio: ['ignore', 'pipe', 'ignore'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.once('error', () => resolve(true));
    child.once('close', (code) => resolve(code !== 0 || !output.includes('not found')));
  });
}

// Returns whether the link had to be (re)created.
async function linkInstalledBinary(cachedBinary) {
  const current = await fs.readlink(INSTALLED_BINARY).catch(() => null);
  if (current === cachedBinary) {
    return false;
  }
  // Symlinking to a temporary name and renaming it replaces whatever is there atomically.
  await fs.mkdir(path.dirname(INSTALLED_BINARY), { recursive: true });
  const temporaryLink = `${INSTALLED_BINARY}.${process.pid}.tmp`;
  await fs.rm(temporaryLink, { force: true });
  await fs.symlink(cachedBinary, temporaryLink);
  await fs.rename(temporaryLink, INSTALLED_BINARY);
  return true;
}

async function buildWorker(version, cachedBinary, log) {
  await checkBuildPrerequisites();
  log(`mediasoup-worker ${version}: no cached build, compiling from source (takes minutes)`);

  const startedAt = Date.now();
  const tempDir = await fs.mkdtemp(path.join(os.tmpdir(), 'mediasoup-worker-'));
  const sourceDir = path.join(tempDir, 'worker');
  const buildDir = path.join(tempDir, 'build');
  const outputTail = [];
  try {
    await prepareSources(sourceDir);
    const setupArgs = ['setup', buildDir, '--buildtype=release', '-Db_ndebug=true'];
    await run('meson', [...setupArgs, '--wrap-mode=nodownload'], sourceDir, log, outputTail);
    await run('ninja', ['-C', buildDir, 'mediasoup-worker'], sourceDir, log, outputTail);

    // Copying to a temporary name and renaming it means the cache never holds a partial binary.
    await fs.mkdir(path.dirname(cachedBinary), { recursive: true });
    const temporaryBinary = `${cachedBinary}.${process.pid}.tmp`;
    await fs.copyFile(path.join(buildDir, 'mediasoup-worker'), temporaryBinary);
    await fs.chmod(temporaryBinary, 0o755);
    await fs.rename(temporaryBinary, cachedBinary);
  } catch (error) {
    const tail = outputTail.join('\n');
    throw new Error(`Building mediasoup-worker ${version} failed: ${error.message}\n${tail}`, {
      cause: error,
    });
  } finally {
    await fs.rm(tempDir, { recursive: true, force: true });
  }

  const seconds = Math.round((Date.now() - startedAt) / 1000);
  log(`mediasoup-worker ${version}: built in ${seconds}s`);
}

async function checkBuildPrerequisites() {
  const missing = [];
  for (const [command, debianPackage] of Object.entries(BUILD_TOOLS)) {
    if (!(await isOnPath(command))) {
      missing.push(debianPackage);
    }
  }
  // Without pkg-config the libraries cannot be checked, so all of them are listed.
  const canCheckLibraries = !missing.includes('pkg-config');
  for (const [debianPackage, pkgConfigModule] of Object.entries(SYSTEM_LIBRARIES)) {
    if (!canCheckLibraries || !(await pkgConfigHas(pkgConfigModule))) {
      missing.push(debianPackage);
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `Building mediasoup-worker needs missing Debian packages: ${missing.join(' ')} ` +
        `(apt-get install -y ${missing.join(' ')})`,
    );
  }
}

function isOnPath(command) {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const checks = dirs.map((dir) => fs.access(path.join(dir, command), fs.constants.X_OK));
  return Promise.any(checks).then(
    () => true,
    () => false,
  );
}

function pkgConfigHas(pkgConfigModule) {
  return new Promise((resolve) => {
    const child = spawn('pkg-config', ['--exists', pkgConfigModule], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}

// Copies the worker sources and rewires them to build against the system libraries.
async function prepareSources(sourceDir) {
  const outDir = path.join(WORKER_SOURCE_DIR, 'out');
  await fs.cp(WORKER_SOURCE_DIR, sourceDir, { recursive: true, filter: (src) => src !== outDir });

  // Debian 12 ships meson 1.0.1, which builds this worker fine despite its declared 1.1.0 minimum.
  const mesonBuild = path.join(sourceDir, 'meson.build');
  const mesonBuildText = await fs.readFile(mesonBuild, 'utf8');
  const relaxed = mesonBuildText.replace(
    /meson_version\s*:\s*'[^']*'/,
    "meson_version: '>= 1.0.0'",
  );
  await fs.writeFile(mesonBuild, relaxed);

  const subprojectsDir = path.join(sourceDir, 'subprojects');
  for (const [name, shim] of Object.entries(SHIMS)) {
    await fs.rm(path.join(subprojectsDir, `${name}.wrap`), { force: true });
    const shimDir = path.join(subprojectsDir, name);
    await fs.mkdir(shimDir);
    await fs.writeFile(path.join(shimDir, 'meson.build'), `project('${name}')\n\n${shim.build}`);
    if (shim.options) {
      await fs.writeFile(path.join(shimDir, 'meson_options.txt'), shim.options);
    }
  }
}

// Streams each output line to the log and keeps the last lines for error messages.
function run(command, args, cwd, log, outputTail) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const onLine = (line) => {
      log(`  ${line}`);
      outputTail.push(line);
      if (outputTail.length > BUILD_OUTPUT_TAIL_LINES) {
        outputTail.shift();
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop();
        lines.forEach(onLine);
      });
      stream.on('end', () => partial && onLine(partial));
    }
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve();
      } else {
        reject(new Error(`${command} exited with ${signal ?? `code ${code}`}`));
      }
    });
  });
}

if (path.resolve(process.argv[1] ?? '') === import.meta.filename) {
  ensureMediasoupWorker({ log: console.log }).catch((error) => {
    console.error(error.message);
    process.exitCode = 1;
  });
}
