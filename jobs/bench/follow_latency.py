#!/usr/bin/env python3
"""Follow's end-to-end latency on the local stack: write to a table at a steady rate while
`dynamo-etl follow` applies its stream to PostgreSQL, and report how long each write took to
become visible in the served table (p50/p95/max), with follow's CPU and RSS over the run.

Run it through jobs/bench/follow (it loads the stack's environment and the bench's boto3):

    jobs/bench/follow --rate 200 --seconds 120
    jobs/bench/follow --rate 1000 --seconds 120 --writers 8

The table has one item type (`pk` = `ITEM#<n>`, `sk` = `A`), with a counter `v` that grows with
every write. Of every ten writes seven put an item (new or over an old one), two update one and
one deletes one. Stream records of a shard are applied in order, so once the served table's
largest `v` is at least i, write i (if it was not overwritten or deleted since) is visible: the
latency of write i is the first poll that sees max(v) >= i minus the time the write returned.
The served table is polled every --poll-ms (default 200), which bounds the resolution. Follow's
RSS is sampled every second from /proc; its CPU comes from /proc at the end. Nothing here
asserts a time.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone


def log(msg):
    print(f"follow-bench: {msg}", file=sys.stderr, flush=True)


def psql_url(url):
    return url if url.startswith("postgres") else "postgres://" + url.split("://", 1)[1]


def sql(env, statement):
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", psql_url(env["ETL_WAREHOUSE_URL"]),
                           "-c", statement], env=env, check=True, capture_output=True, text=True).stdout.strip()


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def proc_stat(pid):
    """(utime + stime in seconds, RSS in MB) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--rate", type=int, default=200, help="writes per second (default 200)")
    p.add_argument("--seconds", type=int, default=120, help="how long to write (default 120)")
    p.add_argument("--writers", type=int, default=4, help="writer threads (default 4)")
    p.add_argument("--items", type=int, default=5000, help="items in the table at the start (default 5000)")
    p.add_argument("--batch-seconds", type=int, default=10)
    p.add_argument("--poll-ms", type=int, default=200)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "target", "bench"))
    args = p.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    import boto3

    env = dict(os.environ)
    env.update({"ETL_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
    env.pop("RUST_BACKTRACE", None)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    table, target = f"follow_bench_{stamp}", f"follow_bench_{stamp.lower()}"
    env["ETL_PREFIX"] = f"bench/follow-{stamp}/dynamo-etl"
    etl = os.path.join(args.bin_dir, "dynamo-etl")
    ddb = boto3.client("dynamodb", endpoint_url=env["ETL_DYNAMODB_ENDPOINT"])

    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    counter = {"v": 0}
    lock = threading.Lock()

    def item(n, v):
        return {"pk": {"S": f"ITEM#{n}"}, "sk": {"S": "A"}, "v": {"N": str(v)}, "name": {"S": f"item {n}"},
                "score": {"N": str(random.randint(0, 10**6))}, "tags": {"SS": ["a", f"t{n % 7}"]}}

    def next_v():
        with lock:
            counter["v"] += 1
            return counter["v"]

    log(f"loading {args.items} items into {table}")
    for start in range(0, args.items, 25):
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item(n, next_v())}}
                                                   for n in range(start, min(start + 25, args.items))]})
    schemas, empty = tempfile.mkdtemp(prefix="follow-bench-schemas-"), tempfile.mkdtemp(prefix="follow-bench-none-")
    subprocess.run([etl, "infer-schema", "--table", table, "--no-schema-cache", "--schemas-dir", empty,
                    "--write-static", schemas], env=env, check=True, capture_output=True)
    log("full copy")
    subprocess.run([etl, "run", "--table", table, "--target", target, "--schemas-dir", schemas],
                   env=env, check=True, capture_output=True)
    served = sql(env, f"SELECT table_name FROM information_schema.columns WHERE table_schema = '{target}' "
                      "AND column_name = 'v' LIMIT 1")
    log(f"served table {target}.{served}; starting follow")
    follow_log = open(os.path.join(tempfile.gettempdir(), f"follow-bench-{stamp}.log"), "w+")
    follower = subprocess.Popen([etl, "follow", "--table", table, "--target", target, "--schemas-dir", schemas,
                                 "--batch-seconds", str(args.batch_seconds)],
                                env=env, stdout=follow_log, stderr=subprocess.STDOUT)
    time.sleep(3)

    written = {}  # v -> monotonic time the write returned
    errors = []
    stop = threading.Event()
    per_writer = args.rate / args.writers

    def writer(w):
        client = boto3.client("dynamodb", endpoint_url=env["ETL_DYNAMODB_ENDPOINT"])
        rng = random.Random(w)
        interval, due = 1 / per_writer, time.monotonic()
        while not stop.is_set():
            n = rng.randrange(args.items * 2)
            kind = rng.randrange(10)
            v = next_v()
            try:
                write(client, rng, n, kind, v)
            except Exception as e:  # counted and reported; the writer goes on
                errors.append(repr(e))
                continue
            if kind < 9:
                written[v] = time.monotonic()
            due += interval
            time.sleep(max(0, due - time.monotonic()))

    def write(client, rng, n, kind, v):
        if kind < 7:
            client.put_item(TableName=table, Item=item(n, v))
        elif kind < 9:
            client.update_item(TableName=table, Key={"pk": {"S": f"ITEM#{n}"}, "sk": {"S": "A"}},
                               UpdateExpression="SET v = :v, score = :s REMOVE tags",
                               ExpressionAttributeValues={":v": {"N": str(v)}, ":s": {"N": str(rng.randint(0, 99))}})
        else:
            client.delete_item(TableName=table, Key={"pk": {"S": f"ITEM#{n}"}, "sk": {"S": "A"}})

    rss, latencies = [], {}
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    seen, last_sample, end = 0, 0, started + args.seconds
    drain_until = None
    while True:
        now = time.monotonic()
        if now >= end and not stop.is_set():
            stop.set()
            for t in threads:
                t.join()
            drain_until = time.monotonic() + max(60, 4 * args.batch_seconds)
            final = max(written) if written else 0
        top = int(sql(env, f'SELECT coalesce(max("v"), 0) FROM "{target}"."{served}"') or 0)
        polled = time.monotonic()
        if top > seen:
            for v, t in written.copy().items():
                if seen < v <= top and v not in latencies:
                    latencies[v] = polled - t
            seen = top
        if now - last_sample >= 1:
            try:
                rss.append(proc_stat(follower.pid)[1])
            except (FileNotFoundError, StopIteration):
                break
            last_sample = now
        if drain_until and (seen >= final or time.monotonic() > drain_until):
            break
        time.sleep(args.poll_ms / 1000)
    cpu, _ = proc_stat(follower.pid)
    follower.send_signal(signal.SIGTERM)
    follower.wait(timeout=120)
    wall = time.monotonic() - started
    values = [latencies[v] for v in written if v in latencies and v > args.items]
    missing = [v for v in written if v not in latencies and v > seen]
    follow_log.seek(0)
    batches = [line for line in follow_log if line.startswith("batch ")]
    result = {
        "rate_per_s": args.rate, "seconds": args.seconds, "writes": len(written),
        "achieved_writes_per_s": round(len(written) / 0.9 / args.seconds, 1), "write_errors": len(errors),
        "first_errors": errors[:3], "batch_seconds": args.batch_seconds,
        "latency_s": {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values) if values else None},
        "not_visible_at_end": len(missing), "follow_cpu_s": round(cpu, 2), "follow_cpu_share": round(cpu / wall, 3),
        "follow_rss_mb": {"first": rss[0] if rss else None, "max": max(rss) if rss else None,
                          "last": rss[-1] if rss else None},
        "batches": len(batches), "loadavg_1min": os.getloadavg()[0],
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"follow-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    log(f"results: {path}")
    sql(env, f'DROP SCHEMA IF EXISTS "{target}" CASCADE; DROP SCHEMA IF EXISTS "{target}_previous" CASCADE; '
             f'DROP SCHEMA IF EXISTS "{target}_follow_staging" CASCADE')
    ddb.delete_table(TableName=table)


if __name__ == "__main__":
    main()
