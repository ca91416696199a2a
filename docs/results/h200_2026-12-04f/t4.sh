source tmp_dev/common.sh
N=3 CELLS=14 b 150 t4_c14_b32a python3 $R/tmp_dev/cells_calls.py $R 3 512 32
N=3 CELLS=8 b 60 t4_c8_b32a python3 $R/tmp_dev/cells_calls.py $R 3 512 32
N=3 CELLS=14 b 60 t4_c14_b32b python3 $R/tmp_dev/cells_calls.py $R 3 512 32
N=3 CELLS=8 b 60 t4_c8_b32b python3 $R/tmp_dev/cells_calls.py $R 3 512 32
N=3 CELLS=14 b 60 t4_c14_b16a python3 $R/tmp_dev/cells_calls.py $R 3 512 16
N=3 CELLS=8 b 60 t4_c8_b16a python3 $R/tmp_dev/cells_calls.py $R 3 512 16
N=40 CELLS=14 b 60 t4_c14_b32_phases python3 $R/tmp_dev/calls3.py $R 1 1 512 32
