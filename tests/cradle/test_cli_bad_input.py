"""Bad input to the `mnemos` CLI, as a careless user or an attacker types it, with no platform up.

Each case is a real process: it must exit non-zero, print no traceback, and say in one line which
option, argument or field is wrong. No case may start Ray: the process runs with
``mnemos.cradle.init_ray`` and ``start_local`` replaced by a refusal, so a command that would
start an embedded cluster for bad input fails here instead of starting one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLOSED = "http://127.0.0.1:9"  # port 9 (discard): nothing listens
LONG = "a" * 100_000
NO_RAY = (
    "import sys\n"
    "import mnemos.cradle\n"
    "def refuse(*args, **kwargs):\n"
    "    sys.exit('test: this bad input would have started a Ray cluster')\n"
    "mnemos.cradle.init_ray = mnemos.cradle.start_local = refuse\n"
    "from mnemos.cli import main\n"
    "main()\n"
)

# (case id, command line, what the message must name). The first group was broken (a traceback,
# exit 0, a Ray cluster started for nothing, or a message naming nothing); the last already works.
CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("get-generation-without-name", ("get", "Model", "-g", "3"), "--generation needs a NAME"),
    ("get-watch-without-platform", ("get", "Model", "-w"), "--watch: no platform is up"),
    ("runs-list-limit-zero", ("runs", "list", "--limit", "0"), "'--limit'"),
    ("runs-cancel-unknown-run", ("runs", "cancel", "r-1"), "run 'r-1' not found"),
    ("run-unknown-pipeline", ("run", "no-such-pipeline"), "pipeline/no-such-pipeline not found"),
    ("run-missing-file", ("run", "no/such/pipeline.yaml"), "no/such/pipeline.yaml: no such file or directory"),
    ("run-100kb-name", ("run", LONG), "FILE 'aaaa"),
    ("resume-unknown-run", ("resume", "no-such-run"), "run 'no-such-run' not found"),
    ("apply-100kb-path", ("apply", "-f", LONG), "File name too long"),
    ("jobs-logs-follow-without-platform", ("jobs", "logs", "j-1", "-f"), "--follow: no platform is up"),
    ("jobs-submit-gpus-nan", ("--url", CLOSED, "jobs", "submit", "m:f", "--gpus", "nan"), "--gpus: nan"),
    ("jobs-submit-cpus-negative", ("--url", CLOSED, "jobs", "submit", "m:f", "--cpus", "-1"), "--cpus: -1"),
    ("jobs-submit-arg-1e999", ("--url", CLOSED, "jobs", "submit", "m:f", "1e999"), "ARGS[0]: 1e999"),
    ("jobs-submit-kwarg-1e999", ("--url", CLOSED, "jobs", "submit", "m:f", "-k", "a=[1e999]"), "--kwarg a: 1e999"),
    ("url-bad-bracket", ("--url", "http://[::1", "status"), "--url: 'http://[::1' is not a valid URL"),
    ("url-with-newline", ("--url", "http://x\ny", "status"), "--url: 'http://x\\ny' contains whitespace"),
    ("usage-url-not-a-url", ("usage", "--url", "notaurl"), "--url: 'notaurl' is not an http(s):// URL"),
    ("login-url-bad-bracket", ("login", "http://[::1", "--api-key", "mk_x"), "URL: 'http://[::1'"),
    ("login-not-a-credential", ("login", "--api-key", "x"), "--api-key: not a MNEMOS credential"),
    ("up-address-is-a-url", ("up", "--address", CLOSED), "--address: 'http://127.0.0.1:9' is a gateway URL"),
    ("kuberay-values-binary", ("kuberay", "render", "-f", "binary.dat"), "--values binary.dat: not UTF-8"),
    ("kuberay-validate-binary", ("kuberay", "validate", "binary.dat"), "binary.dat: not UTF-8"),
    ("kuberay-out-dir-is-a-file", ("kuberay", "render", "--out-dir", "binary.dat"), "--out-dir binary.dat"),
    ("kuberay-schema-out-is-a-folder", ("kuberay", "chart-schema", "--out", "folder"), "--out folder"),
    ("diff-empty-file", ("diff", "-f", "empty.yaml"), "-f/--file: no resources in empty.yaml"),
    ("apply-bad-yaml", ("apply", "-f", "bad.yaml"), "bad.yaml: not valid YAML: line 2, column 2: expected ',' or ']'"),
    ("validate-bad-yaml", ("validate", "-f", "bad.yaml"), "(while parsing a flow sequence from line 1, column 4)"),
    ("kuberay-render-bad-yaml", ("kuberay", "render", "-f", "bad.yaml"), "bad.yaml: not valid YAML: line 2"),
    ("kuberay-validate-bad-yaml", ("kuberay", "validate", "bad.yaml"), "bad.yaml: not valid YAML: line 2"),
    ("sync-not-a-repository", ("sync", "--repo", "folder", "--path", "."), "does not appear to be a git repository"),
    ("wraith-snapshots-missing-folder", ("wraith", "snapshots", "--from", "no-such-backups"), "--from no-such"),
    # a name given twice kept the last value silently
    ("jobs-submit-kwarg-twice", ("--url", CLOSED, "jobs", "submit", "m:f", "-k", "t=a", "-k", "t=b"),
     "--kwarg 't' is given twice"),
    ("run-param-twice", ("run", "no-such-pipeline", "--param", "n=1", "--param", "n=2"), "--param 'n' is given twice"),
    ("url-ends-in-v1", ("--url", "http://127.0.0.1:9/v1", "status"), "give the gateway's root, 'http://127.0.0.1:9'"),
    # submitted, then a traceback (nan) or "still running after -1s"; without --wait, ignored
    ("jobs-submit-wait-timeout-nan", ("--url", CLOSED, "jobs", "submit", "m:f", "--wait", "--wait-timeout", "nan"),
     "--wait-timeout: nan is not a number of seconds above 0"),
    ("jobs-submit-wait-timeout-negative", ("--url", CLOSED, "jobs", "submit", "m:f", "-w", "--wait-timeout", "-1"),
     "--wait-timeout: -1.0 is not a number of seconds above 0"),
    ("jobs-submit-wait-timeout-without-wait", ("--url", CLOSED, "jobs", "submit", "m:f", "--wait-timeout", "5"),
     "--wait-timeout: needs --wait"),
    # --url "$GATEWAY" with the variable unset acted on this machine's platform; a port out of range was
    # "connection refused"; a password in the URL was echoed in the error (and stored by `mnemos login`)
    ("url-empty", ("--url", "", "get", "policy"), "--url: '' is not an http(s):// URL"),
    ("url-port-out-of-range", ("--url", "http://127.0.0.1:99999", "status"),
     "--url: 'http://127.0.0.1:99999' has port 99999, not one of 1-65535"),
    ("url-with-password", ("--url", "http://user:s3cret@127.0.0.1:9", "status"),
     "--url: 'http://***@127.0.0.1:9' carries a user or password"),
    ("login-url-with-password", ("login", "http://user:s3cret@127.0.0.1:9", "--api-key", "mk_x"),
     "URL: 'http://***@127.0.0.1:9' carries a user or password"),
    # click's usage errors printed three lines (Usage:, Try …, Error: …): one line now, with the help to read
    ("unknown-option", ("token", "create", "--foo"), "error: No such option: --foo (see 'mnemos token create --help')"),
    ("unknown-command", ("tokn",), "error: No such command 'tokn'. Did you mean 'token'? (see 'mnemos --help')"),
    ("missing-option", ("token", "create", "--role", "viewer"), "Missing option '--name'. (see 'mnemos token create"),
    # already refused well: kept so that they stay so
    ("jobs-list-limit-not-a-number", ("jobs", "list", "-n", "abc"), "'--limit'"),
    ("get-unknown-kind", ("get", "Nope"), "unknown kind 'Nope'"),
    ("apply-binary-file", ("apply", "-f", "binary.dat"), "binary.dat: not UTF-8 text"),
    ("url-not-a-url", ("--url", "notaurl", "status"), "--url: 'notaurl' is not an http(s):// URL"),
    ("jobs-submit-kwarg-without-equals", ("--url", CLOSED, "jobs", "submit", "m:f", "-k", "key"), "--kwarg: 'key'"),
]


def mnemos(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mnemos ARGS`` in ``home`` (its MNEMOS_HOME, HOME and working folder), Ray refused."""
    unset = ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(MNEMOS_HOME=str(home), HOME=str(home))
    return subprocess.run([sys.executable, "-c", NO_RAY, *args], cwd=home, env=env, capture_output=True,
                          text=True, errors="replace", timeout=60)  # fmt: skip


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    (tmp_path / "binary.dat").write_bytes(bytes([0xFF, 0xFE, 0x00, 0x9C]) * 50)
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\nb: c\n")
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_what_to_fix(home: Path, args: tuple[str, ...], message: str) -> None:
    proc = mnemos(home, *args)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "would have started a Ray cluster" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "s3cret" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()  # click's own usage errors too
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_control_characters_in_an_error_are_shown_escaped(home: Path) -> None:
    """A name echoed back in an error cannot send escape sequences to the user's terminal."""
    proc = mnemos(home, "apply", "-f", "x\x1b[2J\x07")  # (a resource name is refused before it is echoed)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr, repr(proc.stderr)
    assert proc.stderr.strip() == "error: x\\x1b[2J\\x07: no such file or directory", repr(proc.stderr)


def test_a_huge_argument_is_echoed_cut_to_its_start(home: Path) -> None:
    """A 100 KB name echoed back in full buried the message; it is cut to 200 characters, with its length."""
    proc = mnemos(home, "trace", "lineage", LONG)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[:300]
    shown = f"'{LONG[:199]}… ({len(LONG) + 3} characters)"  # the word echoed is the id in quotes, and a colon
    assert proc.stderr.startswith(f"error: no lineage for {shown}") and len(proc.stderr) < 600, proc.stderr[:300]
    proc = mnemos(home, "jobs", "get", LONG)  # CORTEX itself cuts a job id it did not find
    assert proc.returncode == 3 and proc.stderr.strip() == f"error: job '{LONG[:80]}'… not found", proc.stderr[:300]


def test_a_first_write_to_a_local_store_says_where_it_went(home: Path) -> None:
    """After `mnemos logout` (or with a mistyped MNEMOS_HOME) an apply reported "created" to a store
    nothing had used: the platform the user meant never heard of it. The first write says where
    it went; later ones, to a store in use, do not."""
    policy = Path(__file__).resolve().parents[2] / "deployments" / "local" / "policy.yaml"
    logged_out = mnemos(home, "logout")
    assert logged_out.returncode == 0 and "commands now act on this machine's platform" in logged_out.stdout
    first = mnemos(home, "apply", "-f", str(policy))
    assert first.returncode == 0 and "created" in first.stdout, first.stderr
    assert first.stderr.startswith("note: no gateway is configured (`mnemos login URL`) and no platform is up "
                                   f"here: this wrote to the local store {home / 'engram'}"), first.stderr
    again = mnemos(home, "apply", "-f", str(policy))
    assert again.returncode == 0 and "unchanged" in again.stdout and "note:" not in again.stderr, again.stderr
