source scripts/gpu_env.sh
R=$PWD
cd /tmp
b() { name=$1; shift; timeout ${T:-45} python3 $R/benchmarks/$name.py "$@" > $OUT/$name.txt 2>&1; echo "== $name rc=$?"; grep -v -i warn $OUT/$name.txt | tail -${N:-12}; }
b bench_channels --device cuda --iters 10 --skip-tdl
b bench_nms --device cuda
(cd $R && timeout 90 python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -15) > $OUT/pytest_gpu.txt; cat $OUT/pytest_gpu.txt
