source tmp_dev/common.sh
rm -rf /tmp/baseS && mkdir -p /tmp/baseS/v2x && cp -r /tmp/pkg/v2x/. /tmp/baseS/v2x/ && cp $R/tmp_dev/base_scoring.py /tmp/baseS/v2x/sweep_scoring.py
gt 100 pytest_gpu tests/core/test_sweep.py
rm -rf /tmp/t && cp -r $R /tmp/t && ( cd /tmp && timeout 60 python3 -m pytest -q -p no:randomly -p no:cacheprovider --rootdir /tmp/t -c /tmp/t/pyproject.toml /tmp/t/tests/core/test_sweep_scoring.py ) > $OUT/pytest_scoring.txt 2>&1; echo "== scoring rc=$?"; tail -n 3 $OUT/pytest_scoring.txt
for r in 1 2; do
  N=5 b 60 new$r python3 $R/tmp_dev/calls.py $R 2 0 $((r==1))
  N=5 PYTHONPATH=/tmp/baseS:/tmp/site b 60 base$r python3 $R/tmp_dev/calls.py $R 2 0 $((r==1))
done
