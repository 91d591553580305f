"""Phase 1 the way the Python ETL that dynamo-etl replaces did it, for jobs/bench/run.

One thread per segment: a boto3 parallel Scan (the resource API, so items arrive as Python
values), each item classified by its partition-key prefix into a data-schema, written as a row by
the csv module into a gzip file per table in a temporary folder, and the files uploaded to S3 once
the segment is scanned. The data-schemas are the repo's JSON files (schemas/<table>/*.json), so
the tables and column orders are the same as dynamo-etl's.

It keeps the old program's representation (None as an empty field, JSON through json.dumps) rather
than dynamo-etl's exact one: the point is the cost of the old pipeline, not its output.

    python baseline_phase1.py --table T --segments 4 --schemas-dir DIR --bucket B --prefix P

Prints one JSON line: items, rows per table, bytes uploaded, seconds.
"""

import argparse
import base64
import csv
import decimal
import gzip
import json
import os
import sys
import tempfile
import threading
import time

import boto3
from boto3.dynamodb.types import Binary


def load_schemas(schemas_dir, table):
    folder = os.path.join(schemas_dir, table)
    schemas = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                schemas.append(json.load(f))
    # Longest prefix first, like dynamo-etl; a schema without a rule takes the rest.
    schemas.sort(key=lambda s: (s.get("rule") is None, -len((s.get("rule") or {}).get("prefix", ""))))
    return schemas


def json_default(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    raise TypeError(f"cannot serialise {type(value)}")


def to_text(value, kind):
    if value is None:
        return ""
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "binary":
        return base64.b64encode(value.value).decode()
    if kind == "json":
        return json.dumps(value, default=json_default)
    return str(value)


def classify(item, schemas, fallback):
    for schema in schemas:
        rule = schema.get("rule")
        if rule is None:
            return schema
        value = item.get(rule["attribute"])
        if isinstance(value, str) and value.startswith(rule["prefix"]):
            return schema
    return fallback


def run_segment(args, schemas, segment, results):
    session = boto3.session.Session()  # sessions are not thread-safe: one per thread
    table = session.resource("dynamodb", endpoint_url=args.dynamodb_endpoint).Table(args.table)
    s3 = session.client("s3", endpoint_url=args.s3_endpoint)
    unclassified = {"table": "_unclassified", "columns": []}
    layouts = {}
    for schema in schemas + [unclassified]:
        columns = [(c["attribute"], c["type"]["kind"]) for c in schema["columns"]]
        layouts[schema["table"]] = (columns, {a for a, _ in columns})
    folder = tempfile.mkdtemp(prefix=f"baseline-{segment}-", dir=args.work_dir)
    files, writers, rows = {}, {}, {}
    items = 0
    kwargs = {"Segment": segment, "TotalSegments": args.segments, "ConsistentRead": False,
              "ReturnConsumedCapacity": "TOTAL"}
    while True:
        page = table.scan(**kwargs)
        for item in page["Items"]:
            items += 1
            schema = classify(item, schemas, unclassified)
            name = schema["table"]
            columns, known = layouts[name]
            writer = writers.get(name)
            if writer is None:
                f = gzip.open(os.path.join(folder, f"{name}.csv.gz"), "wt", newline="",
                              encoding="utf-8", compresslevel=args.gzip_level)
                files[name] = f
                writer = writers[name] = csv.writer(f)
                rows[name] = 0
            row = [to_text(item.get(attr), kind) for attr, kind in columns]
            extra = {k: v for k, v in item.items() if k not in known}
            row.append(json.dumps(extra, default=json_default) if extra else "")
            writer.writerow(row)
            rows[name] += 1
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    uploaded = 0
    for name, f in files.items():
        f.close()
        path = os.path.join(folder, f"{name}.csv.gz")
        uploaded += os.path.getsize(path)
        s3.upload_file(path, args.bucket, f"{args.prefix}/segments/{segment}/{name}/part-00000.csv.gz")
        os.remove(path)
    os.rmdir(folder)
    results[segment] = {"items": items, "rows": rows, "bytes": uploaded}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--schemas-dir", required=True)
    p.add_argument("--bucket", default=os.environ.get("ETL_BUCKET"))
    p.add_argument("--prefix", required=True)
    p.add_argument("--gzip-level", type=int, default=1)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--dynamodb-endpoint", default=os.environ.get("ETL_DYNAMODB_ENDPOINT"))
    p.add_argument("--s3-endpoint", default=os.environ.get("ETL_S3_ENDPOINT"))
    args = p.parse_args()
    schemas = load_schemas(args.schemas_dir, args.table)
    started = time.monotonic()
    results, errors = {}, []

    def worker(segment):
        try:
            run_segment(args, schemas, segment, results)
        except Exception as e:  # report every failed segment, not just the first
            errors.append(f"segment {segment}: {e!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.segments)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    rows = {}
    for r in results.values():
        for name, n in r["rows"].items():
            rows[name] = rows.get(name, 0) + n
    print(json.dumps({
        "items": sum(r["items"] for r in results.values()),
        "rows": rows,
        "bytes": sum(r["bytes"] for r in results.values()),
        "seconds": round(time.monotonic() - started, 3),
    }))


if __name__ == "__main__":
    main()
