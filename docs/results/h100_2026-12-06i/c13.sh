source tmp_dev/common.sh
N=5 b 200 prof_shapes python3 $R/tmp_dev/prof_shapes.py $R
