source tmp_dev/common.sh
N=12 gt 170 gpu_core_deepjscc tests/core/test_condition_streams.py tests/core/test_sweep.py tests/core/test_triton_device.py
