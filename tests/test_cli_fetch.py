"""``plait fetch``: JSON lines, exit codes, and --resume after a real SIGKILL."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from http_server import Server

from plait import _cli_fetch

SRC = str(Path(__file__).resolve().parents[1] / "src")
KEYS = {"url", "status", "bytes", "elapsed", "attempts", "error"}
# the subcommand on a bare parser, beside the real entry point (python -m plait)
LAUNCHER = (
    "import argparse, sys; from plait._cli_fetch import register; "
    "p = argparse.ArgumentParser(prog='plait'); register(p.add_subparsers()); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))"
)


@pytest.fixture(autouse=True)
def fresh_log(server: Server) -> None:
    server.clear()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plait")
    _cli_fetch.register(parser.add_subparsers())
    return parser.parse_args(argv)


def main(*argv: str) -> int:
    args = parse("fetch", *argv)
    code: int = args.handler(args)
    return code


def command(*argv: str, module: bool = True) -> list[str]:
    if module:
        return [sys.executable, "-m", "plait", "fetch", *argv]
    return [sys.executable, "-c", LAUNCHER, "fetch", *argv]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_urls(tmp_path: Path, urls: list[str]) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("# a comment\n\n" + "\n".join(urls) + "\n")
    return path


def test_defaults_and_options_parse() -> None:
    args = parse("fetch", "urls.txt")
    assert (args.concurrency, args.per_host, args.rate, args.retries, args.timeout) == (
        100, None, None, 3, 30.0
    )
    assert (args.output, args.resume, args.quiet) == (None, False, False)
    args = parse("fetch", "-", "-c", "8", "--per-host", "2", "--rate", "5/s", "--retries", "0",
                 "--timeout", "1.5", "-o", "out.jsonl", "--resume", "-q")
    assert (args.urls, args.concurrency, args.per_host, args.rate) == ("-", 8, 2, "5/s")
    assert (args.retries, args.timeout, args.output, args.resume, args.quiet) == (
        0, 1.5, "out.jsonl", True, True
    )


@pytest.mark.parametrize("bad", [["-c", "0"], ["--retries", "-1"], ["--timeout", "x"]])
def test_bad_numbers_are_usage_errors(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("fetch", "urls.txt", *bad)
    assert exit_info.value.code == 2


def test_one_json_line_per_url_and_a_summary(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [server.url(f"/ok/{i}") for i in range(20)] + [server.url("/status/404"), "ftp://x/"]
    out = tmp_path / "results.jsonl"
    code = main(str(write_urls(tmp_path, urls)), "-c", "4", "--retries", "1", "-o", str(out))
    assert code == 1  # some failed
    records = lines(out)
    assert sorted(str(r["url"]) for r in records) == sorted(urls)
    assert all(set(r) == KEYS for r in records)
    by_url = {r["url"]: r for r in records}
    assert by_url[urls[0]] == {**by_url[urls[0]], "status": 200, "bytes": 4, "attempts": 1,
                               "error": None}
    assert str(by_url[urls[20]]["error"]).startswith("HTTPStatusError: HTTP 404")
    assert str(by_url["ftp://x/"]["error"]).startswith("InvalidRequest")
    err = capsys.readouterr().err
    assert "22 URLs in" in err and "20 ok, 2 failed" in err
    assert "HTTPStatusError 1" in err and "InvalidRequest 1" in err
    assert "ok=20 failed=2" in err  # the progress bar's counts


def test_all_ok_exits_0_and_writes_stdout(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [server.url(f"/ok/{i}") for i in range(3)]
    assert main(str(write_urls(tmp_path, urls)), "-q") == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3 and captured.err == ""


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    urls = str(write_urls(tmp_path, ["http://127.0.0.1:9/"]))
    assert main(urls, "--resume") == 2
    assert "--resume needs -o" in capsys.readouterr().err
    assert main(urls, "--rate", "lots") == 2
    assert "cannot read the rate" in capsys.readouterr().err
    assert main(str(tmp_path / "missing.txt")) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_per_host_caps_the_requests_in_flight(server: Server, tmp_path: Path) -> None:
    urls = [server.url("/slow?s=0.1")] * 8
    assert main(str(write_urls(tmp_path, urls)), "-c", "8", "--per-host", "2", "-q") == 0
    assert server.count("/slow") == 8
    assert server.max_in_flight == 2


def test_rate_spaces_the_starts(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/ok/{i}") for i in range(4)]
    assert main(str(write_urls(tmp_path, urls)), "-c", "8", "--rate", "10/s", "-q") == 0
    times = sorted(server.times(f"/ok/{i}")[0] for i in range(4))
    # 4 starts at 10/s: 0.3 s from the first to the last (a lower bound; load only adds)
    assert times[-1] - times[0] >= 0.25, times


@pytest.mark.parametrize("module", [False, True], ids=["register", "python-m-plait"])
def test_urls_from_stdin_in_a_real_process(server: Server, module: bool) -> None:
    urls = "\n".join(server.url(f"/ok/{i}") for i in range(5)) + "\n"
    done = subprocess.run(
        command("-", "-q", module=module), input=urls, capture_output=True, text=True,
        env=env(), timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(line)["url"] for line in done.stdout.splitlines()) == sorted(
        urls.split()
    )


def test_python_dash_m_plait_fetch(server: Server, tmp_path: Path) -> None:
    urls = write_urls(tmp_path, [server.url("/ok/1"), server.url("/json/x")])
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        command(str(urls), "-o", str(out), module=True), capture_output=True, text=True,
        env=env(), timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(lines(out)) == 2 and "2 URLs in" in done.stderr


def test_resume_after_sigkill_fetches_each_url_exactly_once(server: Server, tmp_path: Path) -> None:
    """Kill a real run halfway with SIGKILL, resume it, and check the server's own log: every
    URL answered exactly once, none missing. The server holds items 40+ unanswered until the
    kill, so the kill lands while four requests are in flight."""
    total, held_from, concurrency = 60, 40, 4
    urls = [server.url(f"/hold/{i}") for i in range(total)]
    url_file = write_urls(tmp_path, urls)
    out = tmp_path / "results.jsonl"
    server.hold(held_from)
    first = subprocess.Popen(
        command(str(url_file), "-c", str(concurrency), "-o", str(out), "-q"), env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # bounded: wait for the first 40 and the stall
            written = len(out.read_text().splitlines()) if out.exists() else 0
            if written >= held_from and server.in_flight == concurrency:
                break
            assert first.poll() is None, first.communicate()[1]
            time.sleep(0.02)
        else:
            pytest.fail("the first run did not reach the held items in time")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        if first.stderr is not None:
            first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while server.in_flight and time.monotonic() < deadline:  # the server sees the disconnects
        time.sleep(0.02)
    assert server.in_flight == 0
    with out.open("a") as handle:  # as if the kill had cut a line in half
        handle.write('{"url": "' + urls[-1][:20])
    before_resume = sum(server.answered.values())
    assert before_resume == held_from
    server.release()

    second = subprocess.run(
        command(str(url_file), "-c", str(concurrency), "-o", str(out), "--resume"), env=env(),
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert second.returncode == 0, second.stderr
    assert f"{held_from} skipped" in second.stderr
    recorded = [str(r["url"]) for r in lines(out)]
    assert sorted(recorded) == sorted(urls)  # none missing, none recorded twice
    answered = {url: server.answered[url.split(str(server.port))[1]] for url in urls}
    assert set(answered.values()) == {1}, "a URL was fetched (answered) more than once"
    received = [server.count(f"/hold/{i}") for i in range(total)]
    assert received == [1] * held_from + [2] * concurrency + [1] * (total - held_from - concurrency)


def test_ctrl_c_stops_the_run_and_keeps_what_finished(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/ok/{i}") for i in range(5)] + [server.url("/hang")] * 3
    out = tmp_path / "out.jsonl"
    run = subprocess.Popen(
        command(str(write_urls(tmp_path, urls)), "-c", "8", "-o", str(out), "--timeout", "60"),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            out.exists() and len(out.read_text().splitlines()) == 5 and server.in_flight == 3
        ):
            time.sleep(0.02)
        started = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert run.returncode == 130 and time.monotonic() - started < 5
    assert "interrupted: run again with --resume" in err
    assert sorted(str(r["url"]) for r in lines(out)) == sorted(urls[:5])
    deadline = time.monotonic() + 5
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.in_flight == 0  # the hanging requests were dropped, not left open


def test_output_in_a_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = str(write_urls(tmp_path, ["http://127.0.0.1:9/"]))
    assert main(urls, "-o", str(tmp_path / "no" / "such" / "out.jsonl")) == 2
    assert "No such file" in capsys.readouterr().err
