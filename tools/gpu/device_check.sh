#!/bin/bash
# On the GPU machine: equivalence + throughput, CPU against GPU in one run; then a per-kernel profile.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for lib in libnvrtc.so libcublas.so libcublasLt.so; do
  f=$(find /usr/local /opt /usr/lib -name "$lib*" 2>/dev/null | grep -v stub | head -1)
  [ -n "$f" ] && export LD_LIBRARY_PATH=$(dirname "$f"):$LD_LIBRARY_PATH
done
set -o pipefail
timeout 230 .gpu/kernels --bench --shared .gpu/shared --out "$OUT" --cpu-threads 2 --cpu-n 10 --max-seconds 120 2>&1 | tee "$OUT/kernels.log"
rc=$?
echo "=== profile"
UPCC_PROFILE=1 timeout 40 .gpu/kernels --bench --shared .gpu/shared --out "$OUT/profile" --no-checks --only conv_big_natural --n 100 --cpu-n 1 2>&1 | tail -30
exit $rc
