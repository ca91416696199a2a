source tmp_dev/common.sh
N=3 b 100 t6_cold_callers python3 $R/tmp_dev/cold2.py $R 512
