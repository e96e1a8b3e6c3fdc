"""A worker process for examples/python-pool.pf: the seed story, done right.

flowrun is the master: it starts `processes` copies of this file and hands
each one its concurrency in FLOWRUN_COROUTINES. Each copy runs that many
threads, each doing a job loop. On SIGTERM (the group's stop signal) or
SIGINT (when run by hand), the signal handler only sets an event — it never
joins or blocks — so every thread finishes its current job and stops; the
main thread then joins them, prints one drain summary and exits 0.

Standard library only (plain threads: no gevent needed).
"""

import os
import random
import signal
import sys
import threading
import time

INDEX = int(os.environ.get("FLOWRUN_INDEX", "0"))
THREADS = max(1, int(os.environ.get("FLOWRUN_COROUTINES", "1")))

stop = threading.Event()
lock = threading.Lock()
done = {"jobs": 0, "interrupted": 0}
received = []


def on_signal(signum, _frame):
    # Only record and set a flag: no join, no print, no lock here.
    received.append(signal.Signals(signum).name)
    stop.set()


def job(rng):
    """Pretend to work on one job for 20–120 ms."""
    time.sleep(rng.uniform(0.02, 0.12))


def work(n):
    rng = random.Random(INDEX * 1000 + n)
    jobs = 0
    while not stop.is_set():
        job(rng)  # a started job is always finished
        jobs += 1
    with lock:
        done["jobs"] += jobs


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [
        threading.Thread(target=work, args=(n,), name=f"job-{n}") for n in range(THREADS)
    ]
    for t in threads:
        t.start()
    print(f"worker {INDEX} started {THREADS} threads", flush=True)
    # Wait in short slices so the handler runs promptly on the main thread.
    while not stop.wait(0.1):
        pass
    for t in threads:
        t.join()
    print(
        f"worker {INDEX} drained: {done['jobs']} jobs by {THREADS} threads "
        f"after {','.join(received)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
