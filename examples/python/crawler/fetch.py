"""Fetch one page of a shard (a stand-in: the example has no network)."""

import gevent


def fetch_one(shard, frontier):
    """Take one URL from `frontier` for `shard` and fetch it."""
    gevent.sleep(0.05)
    return shard, frontier
