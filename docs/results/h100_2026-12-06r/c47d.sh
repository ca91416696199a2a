# session 47 call 2 (warm H100): the digital chain (1 Mbit per link, fp16 min-sum, one process): default launch (per layer above 8,192 blocks) against the persistent kernel for every call, alternating
source tmp_dev/common.sh
D="python3 $R/tmp_dev/force_launch.py $R/benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 --source-workers 8 --ldpc-decoder minsum-fp16"
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
for i in 1 2; do
  left 120 && N=2 b 45 dig_default_$i $D
  left 120 && V2X_AUTO_PERSISTENT=1000000000 N=2 b 45 dig_persistent_$i $D
done
