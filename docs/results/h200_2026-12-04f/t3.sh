source tmp_dev/common.sh
N=40 b 150 t3_phases512b32 python3 $R/tmp_dev/calls3.py $R 2 1 512 32
