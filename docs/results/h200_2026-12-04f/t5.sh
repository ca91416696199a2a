source tmp_dev/common.sh
N=2 b 200 t5_warmup python3 $R/tmp_dev/cells_calls.py $R 0 512
N=8 b 100 t5_cold_phases python3 $R/tmp_dev/cold.py $R phases 512
N=4 b 100 t5_cold_profile python3 $R/tmp_dev/cold.py $R profile 512
