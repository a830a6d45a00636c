#!/usr/bin/env bash
# Fetches Intel oneMKL's runtime from PyPI (pip's `mkl` wheel, ~230 MB download) into DIR and
# keeps only what forge-linalg's optional MKL backend loads for its f32 products: libmkl_rt,
# libmkl_core, libmkl_intel_lp64, libmkl_sequential and the CPU-specific kernel libraries
# (~440 MB unpacked). Prints the path to give FORGE_MKL (or `cargo xtask bench --mkl`).
#   bash xtask/fetch-mkl.sh target/mkl
#   FORGE_MKL=$PWD/target/mkl/libmkl_rt.so.3 cargo xtask bench --model minilm
# The version is pinned so that benchmark reports name the same library; override with
# FORGE_MKL_VERSION. MKL is Intel's (Intel Simplified Software License); Forge does not ship it.
set -euo pipefail
dir="${1:?usage: fetch-mkl.sh DIR}"
version="${FORGE_MKL_VERSION:-2026.2.1}"
python="${PYTHON:-python3}"
if [ -e "$dir/libmkl_rt.so.3" ]; then
  echo "$(cd "$dir" && pwd)/libmkl_rt.so.3"
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: "mkl==$version" -d "$tmp" >&2
wheel="$(ls "$tmp"/mkl-*.whl)"
unzip -q -j -o "$wheel" -d "$dir" \
  '*/lib/libmkl_rt.so.*' '*/lib/libmkl_core.so.*' '*/lib/libmkl_intel_lp64.so.*' \
  '*/lib/libmkl_sequential.so.*' '*/lib/libmkl_def.so.*' '*/lib/libmkl_mc3.so.*' \
  '*/lib/libmkl_avx2.so.*' '*/lib/libmkl_avx512.so.*' '*/lib/libmkl_avx10.so.*'
rt="$(ls "$dir"/libmkl_rt.so.* | head -1)"
[ "$rt" = "$dir/libmkl_rt.so.3" ] || ln -sf "$(basename "$rt")" "$dir/libmkl_rt.so.3"
echo "$(cd "$dir" && pwd)/libmkl_rt.so.3"
