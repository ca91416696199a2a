source tmp_dev/common.sh
N=20 b 280 r5_switch python3 $R/tmp_dev/switch.py $R 3 512
