# LDPC on one GPU in one call (issue 16): GPU tests, throughput against Sionna at two operating
# points, BLER curves with 20,000 blocks per point. Each step writes $OUT/<name>.txt.
source scripts/gpu_env.sh
R=$PWD
cd /tmp
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
(cd $R && timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/semcom/test_ldpc_minsum.py 2>&1 | tail -5) > $OUT/pytest_gpu_ldpc.txt; cat $OUT/pytest_gpu_ldpc.txt
b() {
  out=$1; shift
  timeout ${T:-150} python3 "$@" > $OUT/$out.log 2>&1; rc=$?
  grep -v -i warn $OUT/$out.log > $OUT/$out.txt; rm $OUT/$out.log
  echo "== $out rc=$rc"; tail -${N:-14} $OUT/$out.txt
}
N=30 b bench_ldpc $R/benchmarks/bench_ldpc.py --device cuda --mcs 5,14 --blocks 262144 --sionna-blocks 16384 --early on --repeats 3
N=30 b bench_ldpc_hi $R/benchmarks/bench_ldpc.py --device cuda --blocks 262144 --sionna-blocks 16384 --repeats 3 --snr-offset-db 1 --modes triton,triton-fp16 --early on
T=300 b ldpc_bler $R/benchmarks/ldpc_bler.py --device cuda --blocks 20000 --batch 20000 --decoders sionna,minsum,minsum-fp16 --out $OUT/ldpc_bler_h200.json --figure $OUT/ldpc_bler_h200.png
