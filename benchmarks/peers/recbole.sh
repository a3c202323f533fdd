#!/usr/bin/env bash
# Peer run: RecBole 1.2.1 on a split exported by lmrec as RecBole benchmark files.
#
#   benchmarks/peers/recbole.sh SPLIT_DIR [--models BPR,EASE,ItemKNN,LightGCN,MultiVAE]
#                               [--out results.json] [--lmrec LMREC_RESULTS.json]
#                               [--verbose]
#   benchmarks/peers/recbole.sh --sequential ATOMIC_DIR [--models SASRec,GRU4Rec]
#                               [--out results.json] [--lmrec LMREC_RESULTS.json]
#
# Creates (once) benchmarks/peers/.venv-recbole with Python 3.11 and RecBole's
# pinned stack, then runs benchmarks/peers/recbole_run.py inside it.
# See benchmarks/peers/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RECBOLE_VENV:-$HERE/.venv-recbole}"
PYTHON311="${PYTHON311:-python3.11}"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

# Pins (why: see README.md).
#  - torch==2.13.0 is pinned in the same pip command so pip never picks a CUDA build.
#  - scipy==1.12.0: newest SciPy that still has dok_matrix._update (LightGCN needs it).
#  - numpy<2 / pandas<2.3 / scikit-learn<1.6 / setuptools<81: RecBole 1.2.1 and
#    ray 2.6.3 predate NumPy 2 and use pkg_resources.
#  - the rest are what `import recbole` pulls in at run time (quick_start imports
#    ray.tune; utils imports tensorboard, texttable, thop, colorlog, colorama).
PINS=(
    "recbole==1.2.1"
    "torch==2.13.0"
    "setuptools<81"
    "numpy<2"
    "pandas<2.3"
    "scipy==1.12.0"
    "scikit-learn<1.6"
    "ray==2.6.3"
    "thop==0.1.1.post2209072238"
    "colorlog==4.7.2"
    "colorama==0.4.4"
    "tensorboard>=2.5"
    "texttable>=0.9"
    "tabulate>=0.8.10"
    "plotly>=4"
    "psutil>=5.9"
    "pyyaml>=5.1"
    "tqdm>=4.48"
)

venv_ok() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import warnings
warnings.filterwarnings("ignore")
import recbole, torch, scipy.sparse as sp
assert recbole.__version__ == "1.2.1", recbole.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert hasattr(sp.dok_matrix((1, 1)), "_update")  # LightGCN
import ray, thop, tensorboard, texttable, colorlog  # noqa: F401
EOF
}

if ! venv_ok; then
    if ! command -v "$PYTHON311" >/dev/null 2>&1; then
        echo "recbole.sh: need Python 3.11 ($PYTHON311 not found; set PYTHON311=...)" >&2
        exit 1
    fi
    echo "[recbole] creating $VENV (Python 3.11, RecBole 1.2.1) ..." >&2
    rm -rf "$VENV"
    "$PYTHON311" -m venv "$VENV"
    log="$(mktemp -t recbole-pip.XXXXXX.log)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "${PINS[@]}" >"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" | tail -30 >&2
        echo "recbole.sh: pip install failed (full log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
    if ! venv_ok; then
        echo "recbole.sh: $VENV was installed but does not import RecBole correctly" >&2
        exit 1
    fi
fi

export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1   # RecBole 1.2.1 torch.load()s its own pickles
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning,ignore::FutureWarning,ignore::DeprecationWarning}"
export RECBOLE_THREADS="${RECBOLE_THREADS:-2}"   # torch.set_num_threads() in each model process
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$RECBOLE_THREADS}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-$RECBOLE_THREADS}"
# Passive OpenMP waiting: with the default (spinning) policy, torch's 2 intra-op
# threads stall on every tiny op whenever another process holds a core; MultiVAE's
# validation (2 users per batch) went from ~0.5 s to ~22 s per epoch that way.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$VENV/bin/python" "$HERE/recbole_run.py" "$@"
