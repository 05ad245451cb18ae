#!/usr/bin/env python3
"""Replace one generated section of docs/benchmarks.md (between `<!-- NAME-bench:begin -->`
and `<!-- NAME-bench:end -->`), keeping the rest of the file as written.

    splice.py NAME REPORT_FILE DOC_FILE
"""

import os
import re
import sys


def splice(doc_path, name, text):
    """Put `text` between the NAME markers of the document (appending them when missing)."""
    begin, end = f"<!-- {name}-bench:begin -->", f"<!-- {name}-bench:end -->"
    doc = open(doc_path).read() if os.path.exists(doc_path) else ""
    if begin not in doc:
        doc += f"\n{begin}\n{end}\n"
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end),
                 lambda _: f"{begin}\n{text.strip()}\n{end}", doc, flags=re.S)
    with open(doc_path, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    with open(sys.argv[2]) as f:
        splice(sys.argv[3], sys.argv[1], f.read())
    print(f"wrote the {sys.argv[1]} section of {sys.argv[3]}")
