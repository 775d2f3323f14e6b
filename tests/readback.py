"""Reads an ordersync csv export with Python's csv module and prints its rows
as JSON: a CSV consumer not written here, to check quoting, delimiters, BOM,
line ends and non-ASCII text. Usage: readback.py FILE DELIMITER"""
import csv
import json
import sys

path, delimiter = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8-sig", newline="") as f:
    rows = list(csv.DictReader(f, delimiter=delimiter))
json.dump(rows, sys.stdout, ensure_ascii=False)
