source tmp_dev/common.sh
N=20 b 420 s4_contention2 python3 $R/tmp_dev/contention2.py $R 3 512
