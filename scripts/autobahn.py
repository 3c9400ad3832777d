"""The Python half of scripts/autobahn.sh: runs kosoku (the Autobahn TestSuite cases on
Python 3) in one of its two modes and writes the Autobahn-format reports.

  autobahn.py fuzzingserver --outdir DIR --port-file FILE --timeout SECS [-x CASE]...
      Serves the cases on a free port of 127.0.0.1 for a client under test; writes the
      port to FILE once listening; returns when the client has called /updateReports.
  autobahn.py fuzzingclient --outdir DIR --url ws://127.0.0.1:PORT --timeout SECS [-x CASE]...
      Runs the cases against a server under test, one connection per case.

Exit status 0 when reports were written (whatever the verdicts: scripts/autobahn.sh
judges them against the baseline), 1 when the run failed or timed out.
Run with the venv that scripts/autobahn-setup.sh makes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from kosoku import FailureError, run_fuzzingclient, run_fuzzingserver
from kosoku._report import write_reports


async def fuzzingserver(args: argparse.Namespace) -> list:
    async with run_fuzzingserver(None, args.exclude, host="127.0.0.1", port=0) as server:
        # Written whole and renamed, so the script never reads half a port.
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.port}\n")
        os.replace(tmp, args.port_file)
        print(f"fuzzingserver: ws://127.0.0.1:{server.port}", file=sys.stderr)
        return await server.get_result()


async def fuzzingclient(args: argparse.Namespace) -> list:
    return await run_fuzzingclient(args.url, None, args.exclude, concurrency=1)


async def main() -> int:
    parser = argparse.ArgumentParser(prog="autobahn.py")
    parser.add_argument("mode", choices=["fuzzingserver", "fuzzingclient"])
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--port-file")
    parser.add_argument("--url")
    parser.add_argument("-x", "--exclude", action="append", default=[])
    args = parser.parse_args()
    if args.mode == "fuzzingserver" and not args.port_file:
        parser.error("fuzzingserver needs --port-file")
    if args.mode == "fuzzingclient" and not args.url:
        parser.error("fuzzingclient needs --url")

    run = fuzzingserver if args.mode == "fuzzingserver" else fuzzingclient
    try:
        results = await asyncio.wait_for(run(args), timeout=args.timeout)
    except FailureError as failure:
        # Some case did not pass: the verdicts are the point, not an error here.
        results = failure.results
    except asyncio.TimeoutError:
        print(f"{args.mode}: no result within {args.timeout:.0f} s", file=sys.stderr)
        return 1
    if not results:
        print(f"{args.mode}: no case ran", file=sys.stderr)
        return 1
    write_reports(results, args.outdir)
    print(f"{args.mode}: {len(results)} cases reported in {args.outdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
