source tmp_dev/common.sh
N=150 b 300 q3_idle128 python3 $R/tmp_dev/idle_trace.py $R 128 /tmp/q3_trace.json
gzip -c /tmp/q3_trace.json > $OUT/q3_trace.json.gz; ls -la $OUT
