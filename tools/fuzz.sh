#!/usr/bin/env bash
# The cargo-fuzz targets in fuzz/: `make fuzz` runs each for FUZZ_SECONDS (default 60);
# `tools/fuzz.sh --smoke` (part of `make test`) runs each for FUZZ_SMOKE_SECONDS (default 5).
# Seeds come from fuzz/corpus/<target>/ (never written to: new inputs go to a scratch corpus);
# a crash is kept in fuzz/artifacts/<target>/ and fails the run. Needs the nightly toolchain;
# cargo-fuzz is built once from the crate registry and cached in ~/.cache/atrium/bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-60}
# The smoke builds unoptimised (minutes less to compile, and overflow checks on); a real run
# builds optimised for more executions per second.
profile=()
if [[ "${1:-}" == "--smoke" ]]; then seconds=${FUZZ_SMOKE_SECONDS:-5}; profile=(--dev); fi
version=0.13.2
cache="$HOME/.cache/atrium/bin"
bin="$cache/cargo-fuzz-$version"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzzing needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if [[ ! -x "$bin" ]]; then
  echo "==> building cargo-fuzz $version (once; cached in $cache)"
  root=$(mktemp -d)
  cargo install cargo-fuzz --version "$version" --locked --root "$root" --quiet
  mkdir -p "$cache"
  mv "$root/bin/cargo-fuzz" "$bin"
  rm -rf "$root"
fi

cargo fmt --manifest-path fuzz/Cargo.toml -- --check
fuzz() { RUSTUP_TOOLCHAIN=nightly "$bin" fuzz "$@"; }
# No sanitizer: the targets are safe Rust, and a panic is what they look for.
echo "==> building the fuzz targets (nightly, coverage-instrumented)"
fuzz build --fuzz-dir fuzz -s none "${profile[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=()
for target in $(fuzz list --fuzz-dir fuzz); do
  mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
  echo "==> fuzzing $target for ${seconds}s"
  log="$scratch/$target.log"
  if ! fuzz run --fuzz-dir fuzz -s none "${profile[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target found a crash; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1 || true)
  summary+=("$target: ${runs:-no summary}")
done
printf '==> fuzzing done\n'
printf '    %s\n' "${summary[@]}"
