#!/usr/bin/env python3
"""Re-verify a Cordon audit export without the audit service.

Reads JSON Lines, one AuditRecord per line in the proto3 JSON mapping
(camelCase names, default values left out), as `AuditRecord.toJSON` of
@cordon/proto writes them. Rebuilds each record's canonical encoding as
services/audit/README.md describes it, and checks every hash and prev_hash.
Needs only the Python 3 standard library.

Usage: verify_export.py EXPORT.jsonl [PREV_HASH]
PREV_HASH is the hash of the record before the first exported one. It
defaults to 64 zeros, the prev_hash of seq 1.
Prints "ok N records, last hash H" and exits 0, or names the first bad seq
and exits 1.
"""

import hashlib
import json
import math
import sys
from decimal import Decimal

EVENT_FIELDS = {
    # canonical name: (proto3 JSON name, default)
    "id": ("id", ""),
    "service": ("service", ""),
    "agent_id": ("agentId", ""),
    "action": ("action", ""),
    "outcome": ("outcome", "AUDIT_OUTCOME_UNSPECIFIED"),
    "trace_id": ("traceId", ""),
    "span_id": ("spanId", ""),
    "run_id": ("runId", ""),
    "code_sha256": ("codeSha256", ""),
    "occurred_time": ("occurredTime", None),
}
ATTRIBUTE_CASES = {
    "stringValue": "string_value",
    "intValue": "int_value",
    "doubleValue": "double_value",
    "boolValue": "bool_value",
}


def es_number(value):
    """Format a finite double as ECMAScript's Number::toString does (RFC 8785)."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        raise ValueError(f"{value} has no canonical encoding")
    sign = "-" if value < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = exponent + k  # value = 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def canonical(value):
    """Serialise as JSON with sorted keys and no whitespace (RFC 8785 for these values)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return es_number(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    members = (f"{json.dumps(key, ensure_ascii=False)}:{canonical(value[key])}" for key in sorted(value))
    return "{" + ",".join(members) + "}"


def canonical_event(event_json):
    event = {name: event_json.get(json_name, default) for name, (json_name, default) in EVENT_FIELDS.items()}
    attributes = {}
    for key, tagged in event_json.get("attributes", {}).items():
        ((json_case, value),) = tagged.items()
        case = ATTRIBUTE_CASES[json_case]
        if case == "int_value":
            value = int(value)
        elif case == "double_value":
            value = float(value)
        attributes[key] = {case: value}
    event["attributes"] = attributes
    return event


def main():
    path = sys.argv[1]
    prev_hash = sys.argv[2] if len(sys.argv) > 2 else "0" * 64
    count = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            seq = int(record["seq"])
            body = {
                "event": canonical_event(record.get("event", {})),
                "prev_hash": record.get("prevHash", ""),
                "seq": seq,
                "time": record["time"],
            }
            digest = hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()
            if body["prev_hash"] != prev_hash:
                print(f"seq {seq}: prev_hash does not match the hash of the record before it")
                return 1
            if digest != record.get("hash"):
                print(f"seq {seq}: hash does not match the record")
                return 1
            prev_hash = digest
            count += 1
    print(f"ok {count} records, last hash {prev_hash}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
