source tmp_dev/common.sh
python3 -m pip install -q --no-index --no-deps --target /tmp/spy tmp_dev/wheels/py_spy*.whl; ls /tmp/spy/bin
N=75 b 200 p1_phases512 python3 $R/tmp_dev/calls2.py $R 2 1 512
rm -f /tmp/spy_ready; touch /tmp/spy_go
( cd /tmp && timeout 200 /tmp/spy/bin/py-spy record --threads --idle --nonblocking --rate 200 --format raw -o /tmp/spy.txt -- python3 $R/tmp_dev/spy_calls.py $R 3 512 ) > $OUT/p1_calls.txt 2>&1; echo "spy rc=$?"
tail -8 $OUT/p1_calls.txt
python3 tmp_dev/spy_sum.py /tmp/spy.txt > $OUT/p1_spy_sum.txt 2>&1; gzip -c /tmp/spy.txt > $OUT/p1_spy_raw.txt.gz
head -150 $OUT/p1_spy_sum.txt
