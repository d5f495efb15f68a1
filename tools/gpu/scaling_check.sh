#!/bin/bash
# On the GPU machine: the scaling bench (issue 8) for Conv-big at n = 1000, bounds on the GPU.
for lib in libnvrtc.so libcublas.so libcublasLt.so; do
  f=$(find /usr/local /opt /usr/lib -name "$lib*" 2>/dev/null | grep -v stub | head -1)
  [ -n "$f" ] && export LD_LIBRARY_PATH=$(dirname "$f"):$LD_LIBRARY_PATH
done
set -o pipefail
timeout ${SCALING_LIMIT:-500} .gpu/scaling --models ${MODELS:-conv_big_natural,conv_big_pgd32} --n ${SIZES:-1000} \
  --device cuda --solver ${SOLVER:-highs} --time-limit ${MILP_LIMIT:-60} --timeout 400 2>&1 | tee "$OUT/scaling.log"
rc=$?
cp target/bench-scaling/results.json target/bench-scaling/table.md "$OUT"/ 2>/dev/null
exit $rc
