source tmp_dev/common.sh
N=20 b 400 s1_gil_prep2 python3 $R/tmp_dev/gil_prep2.py 256 8
df -h /dev/shm >> $OUT/gpu.txt; python3 -c "import sys; print(sys.version)" >> $OUT/gpu.txt
