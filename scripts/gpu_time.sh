# Issue 15's README figures ("Time and asynchrony") on one GPU in one call, ~5 minutes:
#   (a)+(c) conf/sweep_asynchrony.yaml: AP against an added delay of 0-400 ms and the age of
#           information, late vs late_extrapolated (compensation), max (intermediate fusion);
#   (b)     conf/sweep_payload_latency.yaml: AP against the payload size at 20 MHz / 10 dB, and
#           the same payloads over an ideal link (content without age).
# Results (Parquet + ledger) under $OUT/asynchrony and $OUT/payload_latency, figures (PNG + PDF)
# under their plots/, logs in $OUT/*.log. A step cut by its timeout keeps every finished group
# (the sweep resumes: run the same command again), and its figures are still drawn.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
GPU="device=cuda data.synthetic.device=cuda quiet=true plots=false"
s() {
  name=$1; t=$2; shift 2
  start=$(date +%s)
  timeout "$t" python3 -m v2x.apps.sweep "$@" $GPU > "$OUT/$name.log" 2>&1; rc=$?
  echo "== $name rc=$rc in $(( $(date +%s) - start )) s"
  grep -E "group [0-9]+/|sweep done|Error|error" "$OUT/$name.log" | tail -n 40
}
p() {
  python3 -m v2x.apps.plot results="[$OUT/$1]" metric=vehicle_ap_70 out_dir="$OUT/$1/plots" \
    formats='[png,pdf]' > "$OUT/$1_table.txt" 2>&1
  cat "$OUT/$1_table.txt"
}
s asynchrony "${T_A:-210}" --config-name sweep_asynchrony output_dir="$OUT/asynchrony"
s payload_latency "${T_B:-120}" --config-name sweep_payload_latency -m \
  budget.bandwidth_hz=20e6,1e15 output_dir="$OUT/payload_latency" \
  hydra.sweep.dir=/tmp/hydra_payload_latency
p asynchrony
p payload_latency
# README tables: (a) AP per delay, (c) what compensation recovers, (b) AP per payload size
python3 scripts/time_tables.py "$OUT/asynchrony" "$OUT/payload_latency" > "$OUT/time_tables.md" 2>&1
cat "$OUT/time_tables.md"
