# session 44, call 1: the issue-16 sweep on an H200 if one came; what a SIGTERM'd sweep leaves on the GPU
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; cp $O/gpu.txt /tmp/o/
if grep -q H200 /tmp/o/gpu.txt; then
  N=3 b 150 sweep_512_fp16 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3 --precision fp16 --codec-precision fp16
  N=3 b 150 sweep_512_fp32 python3 $R/benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3
fi
# a sweep killed by SIGTERM mid-run: who holds GPU memory afterwards
( cd /tmp && exec python3 $R/benchmarks/sweep_overlap.py base --calls 4 ) > /tmp/o/killed.txt 2>&1 &
P=$!
sleep 60
{ echo "== before SIGTERM to $P"; ps -eo pid,ppid,stat,etime,args --forest | grep -v grep | grep -E "python|PID" | cut -c1-200
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv
  ls -l /proc/$P/task | wc -l; } > /tmp/o/kill_diag.txt 2>&1
kill -TERM $P; sleep 5
{ echo "== 5 s after SIGTERM"; ps -eo pid,ppid,stat,etime,args --forest | grep -v grep | grep -E "python|PID" | cut -c1-200
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv; nvidia-smi --query-gpu=memory.used --format=csv
  for c in $(pgrep -f "python3"); do echo "pid $c fds to nvidia: $(ls -l /proc/$c/fd 2>/dev/null | grep -c nvidia)"; done; } >> /tmp/o/kill_diag.txt 2>&1
sleep 25
{ echo "== 30 s after SIGTERM"; ps -eo pid,ppid,stat,etime,args | grep -v grep | grep -E "python|PID" | cut -c1-200
  nvidia-smi --query-gpu=memory.used --format=csv; } >> /tmp/o/kill_diag.txt 2>&1
cat /tmp/o/kill_diag.txt; tail -5 /tmp/o/killed.txt
for pid in $(pgrep -f sweep_overlap); do kill -9 $pid; done
tar czf $O/c30.tgz -C /tmp/o .
