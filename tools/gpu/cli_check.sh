#!/bin/bash
# On the GPU machine: the Conv-big and ResNet-4B examples through the CLI, bounds on the GPU.
# The ResNet example reads ../shared; a copy pointed at the carried .gpu/shared runs instead.
for lib in libnvrtc.so libcublas.so libcublasLt.so; do
  f=$(find /usr/local /opt /usr/lib -name "$lib*" 2>/dev/null | grep -v stub | head -1)
  [ -n "$f" ] && export LD_LIBRARY_PATH=$(dirname "$f"):$LD_LIBRARY_PATH
done
sed "s#../../shared/external#$PWD/.gpu/shared#" examples/table3_resnet_4b.upc > examples/gpu_table3_resnet_4b.upc
rc=0
for ex in table1_conv_big table2_conv_big gpu_table3_resnet_4b; do
  echo "=== $ex"
  /usr/bin/time -f "wall %e s, peak RSS %M KB" timeout 150 .gpu/upcc verify "examples/$ex.upc" \
    --device cuda --no-cache --format json > "$OUT/$ex.json" 2> "$OUT/$ex.err" || rc=1
  tail -3 "$OUT/$ex.err"
  python3 - "$OUT/$ex.json" <<'PY' || true
import json, sys
doc = json.load(open(sys.argv[1]))
for r in doc.get("results", []):
    print({k: r.get(k) for k in ("property", "eps_text", "n", "samplewise_certified", "universal_certified", "milp_status", "seconds")})
PY
done
rm -f examples/gpu_table3_resnet_4b.upc
exit $rc
