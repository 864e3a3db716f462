#!/usr/bin/env python3
"""Extract English prose from the Rust documentation books shipped with the
Rust toolchain (rustup component rust-docs; MIT OR Apache-2.0) and write

  .data/train.txt    training text (not committed)
  data/heldout.txt   held-out pages, disjoint from the training text

Only the <main> element of each mdBook page is read; inside it the text of
paragraphs, list items, headings, definition lists and block quotes is kept.
Code blocks (<pre>), scripts, styles, navigation, tables, and the
search/help widgets are dropped. Output is deterministic (pages sorted by
path, held-out pages chosen by a hash of their path).

Usage: python3 tools/prepare_data.py [--docs DIR] [--out-train .data/train.txt]
                                     [--out-heldout data/heldout.txt]
"""
import argparse
import hashlib
import html.parser
import os
import re
import subprocess
import sys

BOOKS = ["book", "reference", "nomicon", "rust-by-example", "cargo", "rustc",
         "edition-guide", "embedded-book", "style-guide", "rustdoc", "clippy"]
# Skipped pages: whole-book concatenations (would leak held-out text), stubs.
SKIP_FILES = {"print.html", "404.html", "toc.html", "SUMMARY.html"}
# Translations and redirect-only old editions.
SKIP_DIR_RE = re.compile(r"^(?:[a-z]{2}(?:[-_][A-Za-z]{2,4})?|first-edition|second-edition|2018-edition|css|fonts|theme|FontAwesome)$")

BLOCK = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "blockquote", "figcaption"}
DROP = {"pre", "script", "style", "nav", "table", "svg", "button", "noscript", "form", "select", "textarea", "template", "head"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

TRANSLATE = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": " - ",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u200b": "", "\u2192": "->", "\u21d2": "=>",
    "\u2022": "-", "\u00b4": "'", "\u2212": "-",
}
TRANS_TABLE = str.maketrans(TRANSLATE)


class Extractor(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_main = 0
        self.drop = 0
        self.stack = []
        self.buf = []
        self.blocks = []

    def flush(self):
        text = " ".join("".join(self.buf).split())
        self.buf = []
        if text:
            self.blocks.append(text)

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            if tag == "br" and self.in_main and not self.drop:
                self.buf.append(" ")
            return
        self.stack.append(tag)
        if tag == "main":
            self.in_main += 1
        if not self.in_main:
            return
        cls = dict(attrs).get("class") or ""
        if tag in DROP or "hidden" in cls.split() or "boring" in cls.split():
            self.drop += 1
            self.stack[-1] = "#drop:" + tag
            return
        if tag in BLOCK and not self.drop:
            self.flush()

    def handle_startendtag(self, tag, attrs):
        if tag == "br" and self.in_main and not self.drop:
            self.buf.append(" ")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        # pop to the matching tag (tolerates unclosed <p>/<li>)
        names = [t.split(":")[-1] for t in self.stack]
        if tag not in names:
            return
        while self.stack:
            t = self.stack.pop()
            name = t.split(":")[-1]
            if t.startswith("#drop:"):
                self.drop -= 1
            if name == "main":
                self.in_main -= 1
                self.flush()
            elif name in BLOCK and self.in_main and not self.drop:
                self.flush()
            if name == tag:
                break

    def handle_data(self, data):
        if self.in_main and not self.drop:
            self.buf.append(data)


def clean(text):
    text = text.translate(TRANS_TABLE)
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text)
    return " ".join(text.split())


def page_text(path):
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        src = f.read()
    ex = Extractor()
    ex.feed(src)
    ex.close()
    ex.flush()
    out = []
    for b in ex.blocks:
        b = clean(b)
        if len(b) < 3:
            continue
        if b.startswith("Press ") and ("navigate" in b or "search" in b or "help" in b):
            continue
        out.append(b)
    return out


def find_pages(docs):
    pages = []
    for book in BOOKS:
        root = os.path.join(docs, book)
        if not os.path.isdir(root):
            print(f"warning: missing {root}", file=sys.stderr)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not SKIP_DIR_RE.match(d))
            for fn in sorted(filenames):
                if fn.endswith(".html") and fn not in SKIP_FILES:
                    pages.append(os.path.relpath(os.path.join(dirpath, fn), docs))
    return sorted(pages)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default=None, help="rust html docs dir (default: $(rustc --print sysroot)/share/doc/rust/html)")
    ap.add_argument("--out-train", default=".data/train.txt")
    ap.add_argument("--out-heldout", default="data/heldout.txt")
    ap.add_argument("--heldout-bytes", type=int, default=80_000, help="target size of the held-out text")
    ap.add_argument("--max-heldout-page", type=int, default=12_000, help="largest page (bytes) eligible for the held-out set")
    ap.add_argument("--min-page", type=int, default=400, help="drop pages with less text than this (stubs, redirects)")
    args = ap.parse_args()

    docs = args.docs
    if docs is None:
        sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
        docs = os.path.join(sysroot, "share", "doc", "rust", "html")

    pages = find_pages(docs)
    texts = {}
    seen_pages = set()
    for rel in pages:
        blocks = page_text(os.path.join(docs, rel))
        body = "\n".join(blocks)
        if len(body) < args.min_page:
            continue
        h = hashlib.sha1(body.encode()).hexdigest()
        if h in seen_pages:  # identical page under two paths
            continue
        seen_pages.add(h)
        texts[rel] = blocks

    # held-out: pages ordered by a hash of their path, small-to-medium pages only
    order = sorted(texts, key=lambda r: hashlib.sha1(("heldout:" + r).encode()).hexdigest())
    held, total = [], 0
    for rel in order:
        size = len("\n".join(texts[rel]).encode())
        if size > args.max_heldout_page:
            continue
        if total + size > args.heldout_bytes:
            continue
        held.append(rel)
        total += size
        if total >= args.heldout_bytes * 0.95:
            break
    held_set = set(held)
    held_lines = {b for rel in held for b in texts[rel]}

    # training text: every other page, dropping lines that also occur in held-out
    # pages and exact duplicate paragraphs longer than 40 chars
    train_parts, seen_lines, dropped = [], set(), 0
    for rel in sorted(texts):
        if rel in held_set:
            continue
        keep = []
        for b in texts[rel]:
            if b in held_lines:
                dropped += 1
                continue
            if len(b) > 40:
                if b in seen_lines:
                    dropped += 1
                    continue
                seen_lines.add(b)
            keep.append(b)
        if keep:
            train_parts.append("\n".join(keep))
    held_parts = ["\n".join(texts[rel]) for rel in sorted(held)]

    for path, parts in ((args.out_train, train_parts), (args.out_heldout, held_parts)):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(parts) + "\n")
    tb = os.path.getsize(args.out_train)
    hb = os.path.getsize(args.out_heldout)
    print(f"pages read: {len(pages)}, kept: {len(texts)}, held out: {len(held)}")
    print(f"train: {args.out_train} {tb} bytes ({len(train_parts)} pages, {dropped} duplicate lines dropped)")
    print(f"heldout: {args.out_heldout} {hb} bytes")


if __name__ == "__main__":
    main()
