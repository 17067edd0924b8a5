#!/usr/bin/env python3
"""Builds the fuzz seed corpora from the repository's fixtures, read at run time.

    fuzz/seed.py            # writes fuzz/corpus/<target>/ (git-ignored)

Sources: data/events/*.json (the 17 example events) and
data/vectors/signatures.json (the signature cases). The corpus directories are
rebuilt (and only added to) on every run.
Files are named by the SHA-1 of their content, as libFuzzer names its own, so
running this twice adds nothing.
"""
import base64
import hashlib
import hmac
import json
import pathlib
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
DATA = FUZZ.parent / "data"
# Must match notmeta_webhooks_fuzz::{SECRET, OTHER_SECRET} (fuzz/src/lib.rs).
SECRET = b"tu_secret_webhook"
OTHER_SECRET = b"whsec_rotated_out"


def header(body: bytes, secret: bytes) -> bytes:
    return b"sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


class Obj(list):
    """A JSON object as its list of (key, value) pairs: order and duplicates kept."""


def dump(value) -> str:
    if isinstance(value, Obj):
        return "{" + ",".join(json.dumps(k) + ":" + dump(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def variants(body: bytes) -> list:
    """Shapes the example events do not show: `data` before `type` (the crate's
    second parsing path), an unknown type, an extra envelope field."""
    try:
        event = json.loads(body, object_pairs_hook=Obj)
    except ValueError:
        return []
    if not isinstance(event, Obj):
        return []
    data_first = Obj([p for p in event if p[0] != "type"] + [p for p in event if p[0] == "type"])
    unknown = Obj([(k, "call.started" if k == "type" else v) for k, v in event])
    extra = Obj(list(event) + [("api_version", "v2")])
    return [dump(e).encode("utf-8") for e in (data_first, unknown, extra, Obj(data_first[:-1] + [("type", "call.started")]))]


def write(target: str, data: bytes) -> None:
    directory = FUZZ / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main() -> int:
    vectors_file = DATA / "vectors" / "signatures.json"
    events_dir = DATA / "events"
    if not vectors_file.is_file() or not events_dir.is_dir():
        print(f"seed.py: fixtures not found under {DATA}", file=sys.stderr)
        return 1
    cases = json.loads(vectors_file.read_text(encoding="utf-8"))["cases"]
    events = [p.read_bytes() for p in sorted(events_dir.glob("*.json"))]
    events += [v for e in events for v in variants(e)]
    vector_bodies = [base64.b64decode(c["body_base64"]) for c in cases]
    headers = [
        c["signature_header"].encode("utf-8")
        for c in cases
        if c["signature_header"] is not None
    ]

    # header: one value per line; the empty file is "no header".
    write("header", b"")
    for h in headers:
        write("header", h)
    write("header", headers[0] + b"\n" + headers[0])
    write("header", b" \t" + header(b"", SECRET).upper().replace(b"SHA256=", b"sha256=") + b"\t ")

    # verify_and_parse: header line, then the body.
    for c, body in zip(cases, vector_bodies):
        write("verify_and_parse", (c["signature_header"] or "").encode("utf-8") + b"\n" + body)
    for body in events + vector_bodies:
        write("verify_and_parse", header(body, SECRET) + b"\n" + body)
        write("verify_and_parse", header(body, OTHER_SECRET) + b"\n" + body)

    # The parsers: bodies alone.
    for target in ("signed_parse", "parse_unverified"):
        for body in events + vector_bodies:
            write(target, body)

    for target in ("header", "verify_and_parse", "signed_parse", "parse_unverified"):
        count = len(list((FUZZ / "corpus" / target).iterdir()))
        print(f"seed.py: fuzz/corpus/{target}: {count} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
