#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/) replayed by the test command.

Seeds: valid inputs from the specifications, and the malformed, huge, non-UTF-8 and repeated
inputs a hostile client sends. Re-run after adding seeds; the files are committed.
"""
import hashlib, os

HERE = os.path.dirname(os.path.abspath(__file__))
TP = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

seeds = {
    "traceparent": [
        TP, TP[:-1] + b"0", b"cc-" + TP[3:] + b"-extra", TP.upper(), b"ff" + TP[2:],
        b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01", TP.replace(b"-", b"_"), TP + b"-",
        TP[:20], b"", b"\xff\xfe" * 40, b"00-" + b"a" * 5000, b"\x00" * 55,
    ],
    "tracestate": [
        b"congo=t61rcWkgMzE", b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        b"fw529a3039@dt=ZnctZGF0YQ", b" a=1 ,\t, b=2 ", b"a=1\nb=2\nc=3",
        b",".join(b"k%d=v" % i for i in range(40)), b"a=1,a=2", b"A=1", b"a=\xff",
        b"k=" + b"x" * 300, b",".join(b"k%d=%s" % (i, b"v" * 200) for i in range(8)),
        b"\n".join([b"a=1"] * 500), b"=", b"a==b",
        # Keys of the current grammar (`@` anywhere after the first character, up to 256),
        # some of which opentelemetry's TraceState refuses; a leading `@`; repeated keys.
        b"foo@=1", b"a@b@c=1,rojo=2", b"t@abcdefghijklmn=1", b"1foo=1",
        b"t" * 120 + b"@" + b"s" * 135 + b"=1,foo@=2,congo=3",
        b"t" * 120 + b"@" + b"s" * 136 + b"=1", b"@foo=1", b"foo=1,foo=2", b"foo=1\nfoo=2,bar=3",
        b",".join(b"k%d@%s=v" % (i, b"s" * 20) for i in range(32)) + b",k0@" + b"s" * 20 + b"=w",
        b"rojo=1," + b"t" * 120 + b"@" + b"s" * 135 + b"=" + b"x" * 100 + b",big=" + b"y" * 200,
    ],
    "baggage": [
        b"userId=alice,serverNode=DF%2028,isProduction=false",
        b"key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
        b"k=%FF%FE", b"bad member,good=1", b"big=" + b"x" * 5000 + b",small=1",
        b",".join(b"k%d=v" % i for i in range(100)), b"\n".join([b"k=v"] * 300),
        b"a=\xc3\x28", b"=v", b"k=", b"correlation.id=abc",
        # Full: 64 members, and near 8192 bytes (the correlation id must still find room).
        b",".join(b"k%d=v" % i for i in range(64)),
        b"a=" + b"a" * 4080 + b",b=" + b"b" * 4080 + b",small=1",
    ],
    "correlation_id": [
        b"order-42", b"a" * 128, b"a" * 129, b"two words", b"tab\tid", b"\x7f", b"caf\xc3\xa9",
        b"\xff\xfe\xfd", b"", b"!~", b"x" * 100000,
        # Percent-encoded CR/LF (a forged header or log line), NUL, `%` alone, mixed-case hex
        # escapes, and a double-encoded CR/LF that decodes to `%0D%0A`.
        b"abc%0D%0AX-Forged:%201", b"abc%0d%0Aforged", b"abc%00", b"%", b"50%",
        b"order%2d42%3A7", b"abc%250D%250A", b"abc\r\nforged", b"tenant/42", b"a:b.c_d-e",
    ],
    "b3": [
        b"b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        b"b3: a3ce929d0e0e4736-00f067aa0ba902b7-d", b"b3: 0", b"b3: 1", b"b3: d",
        b"b3: 80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1",
        b"X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\nX-B3-SpanId: e457b5a2e4d86bd1\nX-B3-Sampled: 1",
        b"X-B3-TraceId: a3ce929d0e0e4736\nX-B3-SpanId: 00f067aa0ba902b7\nX-B3-Flags: 1",
        b"X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\nX-B3-SpanId: e457b5a2e4d86bd1\nX-B3-Sampled: true",
        b"b3: " + b"a" * 5000, b"\n".join([b"b3: 0"] * 300), b"b3: \xff\xfe",
    ],
    "jaeger": [
        b"uber-trace-id: 80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
        b"uber-trace-id: a3ce929d0e0e4736:00f067aa0ba902b7:0:3",
        b"uber-trace-id: 80f198ee56343ba864fe8b2a57d3eff7%3Ae457b5a2e4d86bd1%3A0%3A1",
        b"uber-trace-id: 1:2:0:1\nuberctx-correlation-id: abc\nuberctx-tenant: a%20b",
        b"uber-trace-id: 0:0:0:1", b"uber-trace-id: x:y:z:w", b"uber-trace-id: " + b"f" * 5000,
        b"\n".join([b"uberctx-k%d: v" % i for i in range(300)]), b"uberctx-k: \xff",
    ],
    "headers": [
        b"traceparent: " + TP + b"\ntracestate: a=1\nbaggage: k=v\nx-correlation-id: abc",
        b"traceparent: " + TP + b"\ntraceparent: " + TP,
        b"\n".join([b"baggage: k%d=v" % i for i in range(200)]),
        b"\n".join([b"tracestate: k%d=v" % i for i in range(200)]) + b"\ntraceparent: " + TP,
        b"x-correlation-id: \xff\nx-request-id: fallback",
        b"traceparent: " + b"z" * 10000,
        b"baggage: correlation.id=from-baggage\ntraceparent: " + TP,
        b"baggage: correlation.id=abc%0D%0Aforged\nx-request-id: abc%0d%0aforged",
        b"baggage: correlation.id=%25\nx-correlation-id: %",
    ],
}

for target, items in seeds.items():
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for data in items:
        with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
            f.write(data)
