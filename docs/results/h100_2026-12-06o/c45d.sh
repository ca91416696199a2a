# session 45 call 3 (warm H100): digital one process fp32 with the bound on/off; the fp16 issue-16 call with 8 scoring processes against 4
source tmp_dev/common.sh
mkdir -p /tmp/o3; O=$OUT; OUT=/tmp/o3; nvidia-smi -L > /tmp/o3/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
D="python3 $R/benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 --processes 1 --passes 3 --source-workers 8"
N=3 b 45 p1_skip $D --skip-undecodable on
left 90 && N=3 b 45 p1_noskip $D --skip-undecodable off
left 135 && N=3 b 45 p1_skip2 $D --skip-undecodable on
left 180 && N=3 b 45 p1_noskip2 $D --skip-undecodable off
i=0; for v in 8 4 8 4; do i=$((i+1)); left 250 || break
  SCORERS=$v PREC=fp16 N=2 b 55 "s${i}_scorers$v" python3 $R/tmp_dev/phases16.py $R 3 0 512 32
done
tar czf $O/c45d.tgz -C /tmp/o3 .
