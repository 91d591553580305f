"""A stand-in DynamoDB endpoint for the memory check of jobs/bench/run (--rss-check).

DynamoDB Local's Scan gets slower with every page of a segment (one segment of 1M items would take
the best part of an hour on this machine), so one phase-1 process cannot be run over a million
real items here. This server answers Scan with the same page over and over — a real page captured
once from the benchmark table — until the requested number of items has been served, and answers
DescribeTable with the benchmark table's key schema. What it measures is the phase-1 process
itself: its memory must not grow with the number of items it streams.

    python replay_scan.py --source-endpoint URL --table T --items N --port P

Serves until killed. Only Scan and DescribeTable are implemented.
"""

import argparse
import json
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# DynamoDB Local accepts any signature; the header only has to be well formed.
FAKE_AUTH = ("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
             "SignedHeaders=host, Signature=0")


def call(endpoint, target, body):
    request = urllib.request.Request(endpoint, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{target}",
        "Authorization": FAKE_AUTH,
    })
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source-endpoint", required=True, help="DynamoDB endpoint holding the benchmark table")
    p.add_argument("--table", required=True)
    p.add_argument("--items", type=int, required=True, help="items to serve in all")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()

    table = call(args.source_endpoint, "DescribeTable", {"TableName": args.table})
    page_items = call(args.source_endpoint, "Scan", {"TableName": args.table})["Items"]
    per_page = len(page_items)
    items_json = json.dumps(page_items)
    pages = -(-args.items // per_page)

    def page(index):
        count = per_page if index < pages - 1 else args.items - per_page * (pages - 1)
        items = items_json if count == per_page else json.dumps(page_items[:count])
        last = "" if index == pages - 1 else (
            f',"LastEvaluatedKey":{{"pk":{{"S":"replay#{index + 1}"}},"sk":{{"S":"x"}}}}')
        return (f'{{"Items":{items},"Count":{count},"ScannedCount":{count}{last},'
                f'"ConsumedCapacity":{{"TableName":"{args.table}","CapacityUnits":{count * 0.5}}}}}').encode()

    full_page = page(0) if pages > 1 else None
    table["Table"]["ItemCount"] = args.items

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            if target == "DescribeTable":
                out = json.dumps(table).encode()
            elif target == "Scan":
                start = body.get("ExclusiveStartKey")
                index = int(start["pk"]["S"].split("#")[1]) if start else 0
                if full_page is not None and index < pages - 1:
                    out = full_page.replace(b'"replay#1"', f'"replay#{index + 1}"'.encode(), 1)
                else:
                    out = page(index)
            else:
                self.send_error(400, f"{target} is not implemented by the replay server")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *_):
            pass

    print(f"replaying {per_page}-item pages of {args.table} up to {args.items} items on port {args.port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
