source tmp_dev/common.sh
N=60 b 150 t2_phases512 python3 $R/tmp_dev/calls2.py $R 2 1 512
