#!/usr/bin/env python3
"""Writes the raw seed inputs of every fuzz target into fuzz/seeds/<target>/:
the test fixtures, the golden files and the README's examples, plus a few
hand-written edge cases. `cargo afl cmin` then minimises them into
fuzz/corpus/<target>/ (see fuzz/README.md). Run from the repository root."""

import json
import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"

# inbox_file: the first byte picks the name (index % 5) and the encoding
# (index // 5 % 3), see NAMES and ENCODINGS in fuzz/src/lib.rs.
JSON, NDJSON, JSONL, CSV = 0, 1, 2, 3
UTF8, WIN1252, LATIN1 = 0, 5, 10


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def inbox():
    t = "inbox_file"
    for f, pick in [
        ("tests/fixtures/order.json", JSON),
        ("tests/fixtures/orders-wrapped.json", JSON),
        ("tests/fixtures/orders-minimal.ndjson", NDJSON),
        ("tests/fixtures/ack-windows1252.csv", CSV + WIN1252),
        ("tests/golden/json.json", JSON),
        ("tests/golden/ndjson.ndjson", JSONL),
        ("tests/golden/csv.csv", CSV),
    ]:
        write(t, Path(f).name, bytes([pick]) + (ROOT / f).read_bytes())
    # A finding, fixed: a long number read back from the store as
    # another float (serde_json without float_roundtrip).
    order = (ROOT / "tests/fixtures/order.json").read_text()
    long = re.sub(r'("unit_price":\s*)[0-9.]+', r"\g<1>222222222222222222222225", order, count=1)
    write(t, "long-number.json", bytes([JSON]) + long.encode())
    readme = {
        "stock.csv": (CSV, "sku,in_stock\nMUG-RED,10\n"),
        "ack.csv": (CSV, "order_id,system_id,regulate_inventory,note\nshop-1001,erp,true,picked by Ann\n"),
        "bad-ack.csv": (CSV, "order_id,system_id,regulate_inventory\nshop-1001,erp,maybe\nghost,erp,no\n"),
        "adjust-bom-crlf.csv": (CSV + LATIN1, "\ufeffSKU;Adjustment;\r\nA;-5;\r\n\"B;1\";+7\r\n\r\n"),
        "both.csv": (CSV, "sku,in_stock,adjustment\nA,1,2\n"),
        "short-row.csv": (CSV + WIN1252, "sku,in_stock\nA\nB,1,,\nC,1,x\n"),
        "empty.json": (JSON, "{}"),
        "array.json": (JSON, '[{"external_id": "a", "line_items": [{"sku": "S", "qty_ordered": 1}]}, 5, "x"]'),
        "wrapper-bad.json": (JSON, '{"orders": 5}'),
        "deep.json": (JSON, '{"external_id": "d", "line_items": [], "x": ' + "[" * 70 + "]" * 70 + "}"),
        "deep-ok.json": (JSON, '[{"external_id": "d", "line_items": [], "x": ' + "[" * 63 + "]" * 63 + "}]"),
        # Findings, fixed: CR alone as line end (rows were all "line 1").
        "cr-only-stock.csv": (CSV, "sku;in_stock\rA,1,2,3,4;5\r\rB;x\r"),
        "cr-only-ack.csv": (CSV, "order_id;system_id;regulate_inventory\rA;erp;maybe\rB;erp;no"),
        "bad.ndjson": (NDJSON, '\n{"external_id": 5}\n[1]\n{"x":\n'),
        "bad-utf8.ndjson": (NDJSON, b'{"external_id": "\xff"}\n'),
        "upper-ext.csv": (4 + WIN1252, b"SKU,IN_STOCK\nA\x80,1\n"),  # ROWS.CSV, windows-1252
    }
    for name, (pick, text) in readme.items():
        data = text if isinstance(text, bytes) else text.encode()
        write(t, name, bytes([pick]) + data)


def query():
    t = "export_query"
    qs = [
        "system_id=erp",
        "system_id=erp&includes[]=lines&include_cancelled=1&limit=100&page=1",
        "system_id=erp&filter_groups[0][filters][0][key]=created_at&filter_groups[0][filters][0][operator]=gte"
        "&filter_groups[0][filters][0][value]=2026-01-01T00:00:00Z&filter_groups[0][filters][1][key]=channel"
        "&filter_groups[0][filters][1][operator]=in&filter_groups[0][filters][1][value][0]=Shopify"
        "&filter_groups[0][filters][1][value][1]=B2B&filter_groups[0][filters][1][not]=true",
        "system_id=erp&filter_groups%5B0%5D%5Bfilters%5D%5B0%5D%5Bkey%5D=created_at"
        "&filter_groups%5B0%5D%5Bfilters%5D%5B0%5D%5Boperator%5D=gte"
        "&filter_groups%5B0%5D%5Bfilters%5D%5B0%5D%5Bvalue%5D=2026-01-01T00:00:00Z",
        "system_id=erp&not_exported_since=2026-11-01T00:00:00Z",
        "system_id=erp&not_exported_since=2026-11-01%2B01:00&include_archived=true&include_not_approved=0",
        "system_id=erp&filter_groups[0][or]=true&filter_groups[0][filters][0][key]=reference"
        "&filter_groups[0][filters][0][operator]=ct&filter_groups[0][filters][0][value]=PO"
        "&filter_groups[0][filters][1][key]=updated_at&filter_groups[0][filters][1][operator]=bt"
        "&filter_groups[0][filters][1][value]=0,1767225600000&filter_groups[1][filters][0][key]=status"
        "&filter_groups[1][filters][0][operator]=in&filter_groups[1][filters][0][value][]=Hold"
        "&filter_groups[1][filters][0][value][]=Waiting",
        "include_cancelled=2&limit=0&colour=red&filter_groups[0][filters][0][key]=colour"
        "&filter_groups[0][filters][0][operator]=eq&filter_groups[0][filters][0][value]=x",
        "system_id=a&system_id=b&page=3&limit=10000&filter_groups[0][filters][0][key]=external_id"
        "&filter_groups[0][filters][0][operator]=sw&filter_groups[0][filters][0][value]=%C3%86ble+x",
    ]
    for i, q in enumerate(qs):
        write(t, f"readme-{i}", q)
    # A finding, fixed: a parameter without a name had an empty `at`.
    write(t, "nameless", "system_id=erp&=x&+=y")


def mark():
    t = "mark_body"
    bodies = [
        {"orders": [{"order_id": "shop-1001", "system_id": "erp", "regulate_inventory": True, "note": "imported as SO-889"}]},
        {"orders": [{"order_id": "a", "system_id": "erp"}, {"order_id": "b", "system_id": "wms", "regulate_inventory": "yes", "note": None}]},
        {"orders": [{"order_id": "", "system_id": 5, "regulate_inventory": 2, "note": [], "x": 1}, 7]},
        {"orders": []},
        {"orders": {}},
    ]
    for i, b in enumerate(bodies):
        write(t, f"body-{i}", json.dumps(b))
    write(t, "not-json", '{"orders": [')


def control():
    t = "control_request"
    for i, args in enumerate([
        ["status", "--json"],
        ["orders", "list", "--system", "erp", "--state", "pending", "--limit", "10", "--after", "x", "--json"],
        ["orders", "show", "shop-1001", "--json"],
        ["inventory", "--sku", "MUG-RED", "--json"],
        ["reexport", "--system", "erp", "--since", "2026-11-01"],
        ["--config", "/etc/ordersync/config.toml", "status"],
        ["run", "--once"],
        ["nope"],
    ]):
        write(t, f"args-{i}", json.dumps({"args": args}) + "\n")
    write(t, "bad", '{"args": "status"}\n')


def config():
    t = "config"
    write(t, "config.toml", (ROOT / "config.toml").read_bytes())
    write(t, "deb-config.toml", (ROOT / "contrib/deb/config.toml").read_bytes())
    write(t, "http.toml", """[http]
listen = "127.0.0.1:8080"

[[http.tokens]]
name    = "erp-partner"
sha256  = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
systems = ["erp"]

[[systems]]
id        = "erp"
transport = "http"
""")
    write(t, "filters.toml", """[[systems]]
id = "erp"
[[systems.filter_groups]]
or = false
filters = [
  { key = "created_at", operator = "gte", value = "2026-01-01T00:00:00Z" },
  { key = "channel", operator = "in", value = ["Shopify", "B2B"], not = true },
  { key = "updated_at", operator = "bt", value = [0, 1767225600000] },
]
""")
    write(t, "bad.toml", """[inbox]
setle = "1s"
max_file_size = "0"
[[systems]]
id = "a/b"
batch_size = 0
[[systems]]
id = "x"
""")


def dump():
    t = "dump"
    text = (ROOT / "tests/dumps/small.ndjson").read_text()
    write(t, "dump.ndjson", text)
    lines = text.splitlines()
    head, body, end = lines[0], lines[1:-1], lines[-1]
    order = next(l for l in body if l.startswith('{"type":"order"'))
    oid = json.loads(order)["id"]
    sha = "ab" * 32

    def whole(records):
        return "\n".join([head] + records + [json.dumps({"format": "ordersync-dump-end", "records": len(records)}, separators=(",", ":"))]) + "\n"

    extra = [
        order,
        json.dumps({"type": "batch", "system": "erp", "seq": 7, "file": "orders-7.json", "orders": [[oid, 1]], "content": {"size": 10, "sha256": sha}}),
        json.dumps({"type": "progress", "name": "big.ndjson", "sha256": sha, "orders": 5000}),
        json.dumps({"type": "note", "order": oid, "system": "erp", "sha256": sha}),
        json.dumps({"type": "event", "order": oid, "seq": 0, "at": -1, "event": "received", "detail": "\u0000"}),
        json.dumps({"type": "export", "system": "erp", "order": oid, "state": "pending", "sort": -9223372036854775808}),
        json.dumps({"type": "stock", "sku": "\u00e6ble", "in_stock": -1}),
    ]
    write(t, "every-kind.ndjson", whole(extra))
    write(t, "cut.ndjson", "\n".join(lines[:-1]) + "\n")
    write(t, "empty.ndjson", "")
    write(t, "v2.ndjson", text.replace('"version":1', '"version":2', 1))
    write(t, "after-end.ndjson", text + body[0] + "\n")
    write(t, "count.ndjson", "\n".join([head] + body + [end.replace('"records":', '"records":1')]) + "\n")
    write(t, "orphan.ndjson", whole([json.dumps({"type": "export", "system": "erp", "order": oid, "state": "acked", "sort": 1})]))
    write(t, "bad-sha.ndjson", whole([json.dumps({"type": "applied_file", "name": "a", "sha256": "AB" * 32, "at": 1, "kind": "orders"})]))
    write(t, "unknown.ndjson", whole([json.dumps({"type": "stock", "sku": "A", "in_stock": 1, "x": 1}), '{"type":"nope"}']))
    write(t, "crlf.ndjson", text.replace("\n", "\r\n"))


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    inbox()
    query()
    mark()
    control()
    config()
    dump()
    for d in sorted(OUT.iterdir()):
        print(d.name, len(os.listdir(d)))
