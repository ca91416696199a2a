source tmp_dev/common.sh
N=20 b 250 r4_contention python3 $R/tmp_dev/contention.py $R 3 512
