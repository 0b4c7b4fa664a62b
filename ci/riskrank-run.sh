#!/usr/bin/env bash
# riskrank in a CI step: ask for the plan, run the tests it names (or the
# whole suite), upload the reports. The GitHub Action, the GitLab template and
# the Jenkinsfile example all call this one script.
#
# It fails open: when riskrank is unreachable, answers an error, or anything
# of riskrank's own goes wrong (the client missing, the tests not listed, the
# plan unreadable), the whole suite runs. Its exit status is always the test
# command's.
#
# Settings, all environment variables:
#   RISKRANK_TEST_COMMAND     required: the command that runs the whole suite,
#                             shell syntax allowed (e.g. "python -m pytest -q");
#                             the plan's tests are appended to it, so it names
#                             no test paths of its own (go: "go test", or
#                             "gotestsum --junitfile report.xml --"; the whole
#                             suite is ./...)
#   RISKRANK_RUNNER           pytest | maven | jest | go | command (default command):
#                             how tests are listed and how the plan's ids become
#                             arguments of the test command
#   RISKRANK_COLLECT_COMMAND  prints the collected test ids, one a line; default
#                             per runner (none for `command`: without a list the
#                             whole suite runs, so a new test is never dropped)
#   RISKRANK_REPORTS          JUnit files or globs to upload, space-separated;
#                             default per runner (pytest: the report this script
#                             asks pytest to write; maven: target/surefire-reports;
#                             jest: junit.xml; go, command: none)
#   RISKRANK_PYTEST_REPORT    where pytest writes its JUnit report (default
#                             riskrank-junit.xml)
#   RISKRANK_UPLOAD           "false": upload nothing (riskrank pulls the results)
#   RISKRANK_SUMMARY          a Markdown file the plan's summary is appended to
#                             (the client's `plan --summary`: the figures and the
#                             first selected tests, or why the whole suite runs);
#                             default GITHUB_STEP_SUMMARY, the job's summary page
#                             on GitHub Actions. When the client wrote none (no
#                             plan), one line says what ran instead. A file that
#                             cannot be written is a warning.
#   RISKRANK_CLIENT           the light client's command (default riskrank-client)
#   RISKRANK_CLIENT_PACKAGE   what pip installs, in a virtualenv of its own, when
#                             the client is missing (default riskrank-client; a
#                             path to clients/riskrank-client works)
#   RISKRANK_URL, RISKRANK_TOKEN, RISKRANK_MODE, RISKRANK_BUDGET, RISKRANK_BY,
#   RISKRANK_SHARD, RISKRANK_REPO, RISKRANK_COMMIT, RISKRANK_BRANCH
#                             read by the client itself (see its README)
set -u -o pipefail

say() { printf 'riskrank: %s\n' "$*" >&2; }

runner=${RISKRANK_RUNNER:-command}
command=${RISKRANK_TEST_COMMAND:-}
client=${RISKRANK_CLIENT:-riskrank-client}
client_state=unknown
work=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/riskrank.XXXXXX") || work=.riskrank
mkdir -p "$work"
pytest_report=${RISKRANK_PYTEST_REPORT:-riskrank-junit.xml}
summary_file=${RISKRANK_SUMMARY:-${GITHUB_STEP_SUMMARY:-}}
summarized=false

if [ -z "$command" ]; then
  say "RISKRANK_TEST_COMMAND is not set: nothing to run"
  exit 2
fi
case "$runner" in
  pytest | maven | jest | go | command) ;;
  *)
    say "unknown RISKRANK_RUNNER '$runner' (pytest, maven, jest, go, command): run the whole suite"
    runner=command
    ;;
esac

# The test command with arguments appended, each one word whatever it holds.
run_tests() {
  bash -c "$command"' "$@"' riskrank-tests "$@"
}

# Arguments that every pytest run gets: a JUnit report with pytest's node ids
# (xunit1 writes the file attribute riskrank's ids start with), and the
# pytest-riskrank plugin off, were it installed: it reads the same RISKRANK_*
# variables and would trim the plan's tests again and upload twice.
pytest_report_args=()
if [ "$runner" = pytest ]; then
  rm -f "$pytest_report" # never upload an earlier run's
  pytest_report_args=(-p no:riskrank -o junit_family=xunit1 "--junitxml=$pytest_report")
fi

client_ready() {
  [ "$client_state" = ready ] && return 0
  [ "$client_state" = missing ] && return 1
  client_state=missing
  if [ -z "${RISKRANK_URL:-}" ] || [ -z "${RISKRANK_TOKEN:-}" ]; then
    say "RISKRANK_URL or RISKRANK_TOKEN is not set"
    return 1
  fi
  # shellcheck disable=SC2086  # RISKRANK_CLIENT may be a command with arguments
  if command -v ${client%% *} >/dev/null 2>&1; then
    client_state=ready
    return 0
  fi
  # A virtualenv of its own: the system's Python may refuse packages (PEP
  # 668), and the project's own environment stays as it was.
  local package=${RISKRANK_CLIENT_PACKAGE:-riskrank-client}
  say "installing the light client ($package)"
  if python3 -m venv "$work/client" >&2 \
    && "$work/client/bin/python" -m pip install --quiet --disable-pip-version-check "$package" >&2; then
    client="$work/client/bin/riskrank-client"
    client_state=ready
    return 0
  fi
  say "the light client could not be installed"
  return 1
}

collect() {
  if [ -n "${RISKRANK_COLLECT_COMMAND:-}" ]; then
    bash -c "$RISKRANK_COLLECT_COMMAND"
    return
  fi
  case "$runner" in
    pytest)
      # Node ids, one a line (verbosity -1 whatever the command's -q or -v
      # say); the summary and warnings have no "::".
      run_tests -p no:riskrank --collect-only --verbosity=-1 | grep '::'
      ;;
    maven)
      # Test classes (riskrank's ids are "pkg.Class::method"; a class stands
      # for its methods).
      find . -path '*/src/test/java/*' \( -name '*Test.java' -o -name 'Test*.java' \
        -o -name '*Tests.java' -o -name '*TestCase.java' \) |
        sed 's|.*/src/test/java/||; s|\.java$||; s|/|.|g' | sort -u
      ;;
    jest)
      # Test files (jest-junit's ids start with the file).
      run_tests --listTests | sed "s|^$PWD/||"
      ;;
    go)
      # "package::TestName", as go-junit-report and gotestsum name them.
      local pkg
      for pkg in $(go list ./...); do
        go test -list . "$pkg" | grep -E '^(Test|Fuzz|Example)' | sed "s|^|$pkg::|"
      done
      ;;
    *)
      return 1
      ;;
  esac
}

# Reads $work/plan.json: the plan id, then the selected ids in run order.
read_plan() {
  python3 - "$work/plan.json" <<'EOF'
import json, sys
plan = json.load(open(sys.argv[1], encoding="utf-8"))
print(plan.get("plan_id") or "")
for test in plan.get("tests") or []:
    if test.get("selected"):
        print(test["test"])
EOF
}

# The plan's ids ($work/selected.txt) as the runner's arguments, one a line.
plan_arguments() {
  local selected="$work/selected.txt"
  case "$runner" in
    pytest | command) cat "$selected" ;;
    maven)
      echo "-Dsurefire.failIfNoSpecifiedTests=false"
      echo "-Dtest=$(sed 's/::/#/' "$selected" | paste -sd, -)"
      ;;
    jest)
      echo "--runTestsByPath"
      sed 's/::.*//' "$selected" | awk '!seen[$0]++'
      ;;
    go)
      # One run: the names of every package's tests, then the packages. A
      # test of the same name in another listed package runs too: more, never less.
      echo "-run"
      echo "^($(sed 's/.*:://' "$selected" | awk '!seen[$0]++' | paste -sd'|' -))\$"
      sed 's/::.*//' "$selected" | awk '!seen[$0]++'
      ;;
  esac
}

upload() {
  if [ "${RISKRANK_UPLOAD:-true}" = false ]; then
    return 0
  fi
  local patterns=${RISKRANK_REPORTS:-}
  if [ -z "$patterns" ]; then
    case "$runner" in
      pytest) patterns=$pytest_report ;;
      maven) patterns="target/surefire-reports/*.xml */target/surefire-reports/*.xml" ;;
      jest) patterns=junit.xml ;;
    esac
  fi
  local reports=() pattern file
  for pattern in $patterns; do
    for file in $pattern; do
      [ -f "$file" ] && reports+=("$file")
    done
  done
  if [ "${#reports[@]}" -eq 0 ]; then
    say "no test report to upload${patterns:+ ($patterns)}"
    return 0
  fi
  if ! client_ready; then
    return 0
  fi
  local options=()
  [ -n "${plan_id:-}" ] && options=(--plan-id "$plan_id")
  # shellcheck disable=SC2086
  $client upload "${options[@]}" "${reports[@]}" || say "the upload failed"
}

# The size of the summary file (0 while there is none).
summary_size() {
  if [ -f "$summary_file" ]; then wc -c <"$summary_file"; else echo 0; fi
}

# Says what runs; the summary file gets the line too unless the client
# already wrote the plan's summary there.
summary() {
  say "$1"
  if [ -n "$summary_file" ] && [ "$summarized" = false ]; then
    { printf '**riskrank**: %s\n' "$1" >>"$summary_file"; } 2>/dev/null || true
  fi
}

# Ask for the plan; on success $work/selected.txt holds the tests to run.
plan() {
  client_ready || return 1
  if ! collect >"$work/collected.txt" || [ ! -s "$work/collected.txt" ]; then
    say "the tests could not be listed"
    return 1
  fi
  local options=(--format json --tests-file "$work/collected.txt") before=0 answered=0
  if [ -n "$summary_file" ]; then
    options+=(--summary "$summary_file")
    before=$(summary_size)
  fi
  # shellcheck disable=SC2086
  $client plan "${options[@]}" >"$work/plan.json" || answered=$?
  # Whatever the client answered, the plan's summary it wrote stands.
  [ -n "$summary_file" ] && [ "$(summary_size)" != "$before" ] && summarized=true
  [ "$answered" -eq 0 ] || return 1
  read_plan >"$work/read.txt" || {
    say "the plan could not be read"
    return 1
  }
  plan_id=$(head -n 1 "$work/read.txt")
  tail -n +2 "$work/read.txt" >"$work/selected.txt"
  collected=$(grep -c . "$work/collected.txt")
  return 0
}

plan_id=
collected=0
status=0
if plan; then
  count=$(grep -c . "$work/selected.txt")
  if [ "$count" -eq 0 ]; then
    summary "the plan (${plan_id:-no id}) selects no test here: nothing to run"
  else
    summary "running $count of $collected tests, riskiest first (plan ${plan_id:-none})"
    mapfile -t arguments < <(plan_arguments)
    run_tests "${pytest_report_args[@]}" "${arguments[@]}"
    status=$?
  fi
else
  summary "running the whole suite"
  plan_id=
  whole=()
  [ "$runner" = go ] && whole=(./...)
  run_tests "${pytest_report_args[@]}" "${whole[@]}"
  status=$?
fi
upload
rm -rf "$work"
exit "$status"
