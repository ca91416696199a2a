# All GPU benchmarks in one call; each writes $OUT/<name>.txt.
source scripts/gpu_env.sh
R=$PWD
cd /tmp
b() { name=$1; shift; timeout ${T:-45} python3 $R/benchmarks/$name.py "$@" > $OUT/$name.txt 2>&1; echo "== $name rc=$?"; grep -v -i warn $OUT/$name.txt | tail -${N:-12}; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
b bench_channels --device cuda --iters 10
b bench_raycast --device cuda --repeats 3 --frames 5
b bench_sweep --device cuda --frames 8
b bench_nms --device cuda
b bench_deepjscc --device cuda
b bench_digital --device cuda --channels 64 --size 64
(cd $R && timeout 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -8) > $OUT/pytest_gpu.txt; tail -8 $OUT/pytest_gpu.txt
