#!/bin/sh
# Debian's ffmpeg, bound to the process that starts it: util-linux's setpriv has the kernel
# SIGKILL it when that process dies, even by SIGKILL, and execs ffmpeg in place (same pid, same
# argv), so no ffmpeg outlives its ingest node.
exec /usr/bin/setpriv --pdeathsig SIGKILL -- /usr/bin/ffmpeg "$@"
