set -e
source scripts/gpu_env.sh
python3 benchmarks/bench_detector.py --device cuda 2>&1 | tee $OUT/bench_detector.txt
python3 scripts/gpu_codec.py --out $OUT --seconds ${SECONDS_BUDGET:-330} 2>&1 | grep -v Warning | tail -25
