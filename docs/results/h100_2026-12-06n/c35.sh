# session 44: scoring processes 4 (base) vs 8 in the fp16 / fp16 issue-16 call, processes alternated
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; nvidia-smi -L > /tmp/o/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
i=0; for v in 4 8 4 8 4 8; do i=$((i+1)); left 300 || break
  SCORERS=$v PREC=fp16 N=2 b 120 "s${i}_scorers$v" python3 $R/tmp_dev/phases16.py $R 3 0 512 32
done
tar czf $O/c35.tgz -C /tmp/o .
