#!/usr/bin/env bash
# Packs what the device check needs into .gpu/ (listed in .git/info/exclude, so it travels only when carried).
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=${SHARED:-../shared/external}
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.gpu/" >> .git/info/exclude; }
rm -rf .gpu && mkdir -p .gpu/shared/vnncomp2021/cifar10_resnet/onnx .gpu/shared/eran
cp "$shared"/vnncomp2021/cifar10_resnet/onnx/*.onnx .gpu/shared/vnncomp2021/cifar10_resnet/onnx/
cp "$shared"/eran/cifar10_test.csv .gpu/shared/eran/
cp target/release/upcc .gpu/upcc
cp "$(ls -t target/release/deps/kernels-* | grep -v '\.d$' | head -1)" .gpu/kernels
# SCALING_TARGET: a target dir where the scaling bench was built with `--features cuda,highs`.
scaling_target=${SCALING_TARGET:-target}
cp "$(ls -t "$scaling_target"/release/deps/scaling-* | grep -v '\.d$' | head -1)" .gpu/scaling
strip .gpu/upcc .gpu/kernels .gpu/scaling
cp tools/gpu/device_check.sh tools/gpu/scaling_check.sh .gpu/
du -sh .gpu
