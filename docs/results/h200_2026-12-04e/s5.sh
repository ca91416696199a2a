source tmp_dev/common.sh
lscpu > $OUT/s5_lscpu.txt 2>&1
N=20 b 300 s5_contention3 python3 $R/tmp_dev/contention3.py $R 3 512
