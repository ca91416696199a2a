# Source on the GPU machine (no package registry): installs carried wheels and maps the
# repository's folders onto the one `v2x` namespace without pip-installing the project.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu-wheels/*.whl >/dev/null 2>&1 || echo "wheel install failed"
rm -rf /tmp/pkg && mkdir -p /tmp/pkg/v2x
cp -r v2x/. /tmp/pkg/v2x/
for d in datasets perception semcom channels conf; do ln -s "$PWD/$d" "/tmp/pkg/v2x/$d"; done
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
