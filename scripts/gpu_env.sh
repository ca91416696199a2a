# The offline install: v2x on a machine with no package registry (e.g. a lent GPU machine that
# has Python, torch, numpy and scipy but cannot reach PyPI). Source it from the repository root:
#
#   ../shared/tools/gpu-wheels.sh .gpu-wheels    # here, with a registry: download/build the wheels
#                                                # (sionna-no-rt, hydra-core, omegaconf, ...) into
#                                                # .gpu-wheels/ (git-ignored: copy it there with the tree)
#   source scripts/gpu_env.sh                    # there: install them and map the project
#
# It installs the carried wheels into /tmp/site (no dependency resolution, no index) and maps the
# repository's folders onto the one `v2x` namespace in /tmp/pkg without pip-installing the
# project (the layout pyproject.toml's package-dir gives), then sets PYTHONPATH. Run Python from
# outside the repository root (its own v2x/ folder would shadow the mapping), e.g.
#   cd /tmp && python3 -m pytest -m gpu --rootdir $R -c $R/pyproject.toml $R/tests
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu-wheels/*.whl >/dev/null 2>&1 || echo "wheel install failed"
rm -rf /tmp/pkg && mkdir -p /tmp/pkg/v2x
cp -r v2x/. /tmp/pkg/v2x/
for d in datasets perception semcom channels conf; do ln -s "$PWD/$d" "/tmp/pkg/v2x/$d"; done
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
