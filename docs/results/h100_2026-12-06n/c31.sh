# session 44, call 2: the killed-sweep check with exit_with_parent; the fp16 issue-16 call's phases
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
mkdir -p /tmp/o; O=$OUT; OUT=/tmp/o; cp $O/gpu.txt /tmp/o/ 2>/dev/null; nvidia-smi -L > /tmp/o/gpu.txt
( cd /tmp && exec python3 $R/benchmarks/sweep_overlap.py base --calls 4 ) > /tmp/o/killed2.txt 2>&1 &
P=$!
sleep 45
{ echo "== before SIGTERM to $P"; ps -eo pid,ppid,stat,etime,args | grep -v grep | grep -E "sweep_overlap|PID" | cut -c1-120
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv; nvidia-smi --query-gpu=memory.used --format=csv; } > /tmp/o/kill_diag2.txt 2>&1
kill -TERM $P; sleep 3
{ echo "== 3 s after SIGTERM"; ps -eo pid,ppid,stat,etime,args | grep -v grep | grep -E "sweep_overlap|PID" | cut -c1-120
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv; nvidia-smi --query-gpu=memory.used --format=csv; } >> /tmp/o/kill_diag2.txt 2>&1
cat /tmp/o/kill_diag2.txt
for pid in $(pgrep -f sweep_overlap); do kill -9 $pid; done
PREC=fp16 N=60 b 240 phases16 python3 $R/tmp_dev/phases16.py $R 3 1 512 32
tar czf $O/c31.tgz -C /tmp/o .
