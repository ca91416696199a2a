source tmp_dev/common.sh
python3 -m pip install -q --no-index --no-deps --target /tmp/spy tmp_dev/wheels/py_spy*.whl
N=70 b 150 q1_syncs128 python3 $R/tmp_dev/syncs2.py $R 128
rm -f /tmp/spy_ready; touch /tmp/spy_go
( cd /tmp && timeout 200 /tmp/spy/bin/py-spy record --threads --idle --nonblocking --rate 200 --format raw -o /tmp/spy.txt -- python3 $R/tmp_dev/spy_calls.py $R 3 512 ) > $OUT/q1_calls.txt 2>&1; echo "spy rc=$?"
tail -5 $OUT/q1_calls.txt
gzip -c /tmp/spy.txt > $OUT/q1_spy_raw.txt.gz; ls -la $OUT
