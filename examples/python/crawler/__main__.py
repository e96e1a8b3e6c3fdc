"""The gevent crawler of examples/crawler.pf (`python -m crawler`).

One process of the `crawler` group: `--greenlets` fetchers take URLs from
this shard of the frontier until SIGTERM. gevent patches first, before any
other import (so nothing imported `threading` unpatched). The SIGTERM
handler runs in gevent's event loop, where blocking is not allowed: it only
hands the drain to a new greenlet with `gevent.spawn`, which may join the
fetchers. flowrun is the master, so there is no multiprocessing Pool here.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from crawler.fetch import fetch_one  # noqa: E402

stopping = Event()
fetchers = []


def drain():
    """Let every fetcher finish its page, then exit 0."""
    stopping.set()
    gevent.joinall(fetchers, timeout=15)
    print(f"crawler: drained {len(fetchers)} fetchers", file=sys.stderr)
    sys.exit(0)


def on_term(signum, frame):
    # Runs in the event loop: hand the work over, never block here.
    gevent.spawn(drain)


def fetcher(shard, frontier):
    while not stopping.is_set():
        fetch_one(shard, frontier)


def main():
    p = argparse.ArgumentParser(prog="crawler")
    p.add_argument("--shard", default="0/1")
    p.add_argument("--greenlets", type=int, default=1)
    p.add_argument("--frontier", default="redis://127.0.0.1:6390/0")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    for _ in range(args.greenlets):
        fetchers.append(gevent.spawn(fetcher, args.shard, args.frontier))
    stopping.wait()
    gevent.sleep(20)


if __name__ == "__main__":
    main()
