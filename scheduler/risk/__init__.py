"""The risk model and what it reads, pure code that never touches the
database (tests/risk/test_purity.py holds it to that): the feature matrix
(`features`, from `columns` and `paths`), the per-test fold (`tally`), the
file-test links (`links`), the replay (`replay`), the LightGBM model
(`training`, `serving`) and the choice of a scorer (`choice`)."""

import os

# LightGBM's OpenMP threads spin while they wait for work by default. On a
# machine whose cores are busy (a worker beside the API, two tasks at once,
# a CI runner) they spin against each other: training 1,000,000 rows took
# 262 s instead of 29 s with passive waiting at the same load (passive was
# about 1.5 times slower on a lightly loaded machine). OpenMP reads it once,
# when it loads with LightGBM, so it is set here, before `training` or
# `serving` imports it; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
