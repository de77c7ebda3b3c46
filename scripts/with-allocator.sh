#!/bin/sh
# Runs a worker command with jemalloc when the system has it (Debian and Ubuntu: libjemalloc2).
# glibc's malloc keeps what libvips and the Temporal core free in fragmented arenas, so a worker
# stays at its preprocessing peak for good; jemalloc returns freed memory to the system within
# seconds (BENCHMARKS.md, "Load"). Without it, capped arenas limit the damage.
# LORA_ALLOCATOR=glibc keeps glibc's malloc, e.g. to measure the difference.
set -eu
if [ "${LORA_ALLOCATOR:-jemalloc}" = jemalloc ]; then
  for lib in /usr/lib/*-linux-gnu/libjemalloc.so.2 /usr/lib/libjemalloc.so.2 /usr/local/lib/libjemalloc.so.2; do
    if [ -e "$lib" ]; then
      export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
      # A parked worker allocates little, so purging must not wait for allocations: a background
      # thread returns freed pages after a second, without the lazy (still resident) stage; two
      # arenas, as for glibc below.
      export MALLOC_CONF="${MALLOC_CONF:-background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2}"
      break
    fi
  done
fi
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec "$@"
