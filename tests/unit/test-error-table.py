#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every error the daemon can reply with is in NOIOMMU_ERROR_TABLE (include/noiommu/protocol.h).

The table is the one list of the protocol's errors: libnoiommu maps a reply's error name to an
errno with it and noiommuctl explains it with it, so a name the daemon sends that is not in the
table reaches the client as a bare -EIO with no meaning (protocol.h, the comment above the
table). This test reads the daemon's sources, with comments removed, and collects every error
name it can send:

  - every NOIOMMU_ERROR_* / VARLINK_ERROR_* macro used in daemon/*.c and daemon/*.h (the
    handlers' replies, conn.c's protocol errors, manager.c's refuse_connection());
  - every error name spelled out as a string ("io.noiommud.Broker.Foo",
    "org.varlink.service.Foo") or built from the interface macro (NOIOMMU_INTERFACE ".Foo"),
    so that a reply that bypasses the macros is caught too;

and checks that each one, resolved to its wire name, is in the table. It also checks that every
error the Broker interface declares (daemon/io.noiommud.Broker.varlink, which the daemon serves
as GetInterfaceDescription) is in the table. Before that, it checks itself on a made-up source
with a name missing from the table, so that it cannot pass by finding nothing.

Usage: test-error-table.py SOURCE_ROOT"""

import glob
import os
import re
import sys

# A C string literal, a character literal, or a comment: comments are blanked, literals kept
# (so that "/*" inside a string cannot start a comment).
C_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
MACRO_USE = re.compile(r"\b((?:NOIOMMU|VARLINK)_ERROR_[A-Z0-9_]+)\b")
# "io.noiommud.Broker.Foo" / "org.varlink.service.Foo": an error is a capitalised last part
# that is not a method (methods are capitalised too: filtered with the method list below).
LITERAL_NAME = re.compile(r'"((?:io\.noiommud\.Broker|org\.varlink\.service)\.[A-Z][A-Za-z]*)"')
BUILT_NAME = re.compile(r'\b(NOIOMMU_INTERFACE|VARLINK_SERVICE_INTERFACE)\s*"\.([A-Z][A-Za-z]*)"')


def strip_comments(text):
    return C_TOKEN.sub(lambda m: " " if m.group(0).startswith("/") else m.group(0), text)


def read_protocol(path):
    """Returns (interfaces, macros, methods, table): the interface macros' values, every
    *_ERROR_* macro's wire name, every method's wire name, and the macros X() lists in
    NOIOMMU_ERROR_TABLE, in order."""
    text = strip_comments(open(path).read())
    interfaces = dict(re.findall(r'#define\s+(NOIOMMU_INTERFACE|VARLINK_SERVICE_INTERFACE)\s+"([^"]+)"',
                                 text))
    assert set(interfaces) == {"NOIOMMU_INTERFACE", "VARLINK_SERVICE_INTERFACE"}, \
        "%s: interface macros not found (%s)" % (path, interfaces)

    def defines(kind):
        out = {}
        for name, iface, suffix in re.findall(
                r'#define\s+((?:NOIOMMU|VARLINK)_%s_[A-Z0-9_]+)\s+(NOIOMMU_INTERFACE|VARLINK_SERVICE_INTERFACE)'
                r'\s+"(\.[A-Za-z]+)"' % kind, text):
            out[name] = interfaces[iface] + suffix
        return out

    macros, methods = defines("ERROR"), defines("METHOD")
    m = re.search(r"#define\s+NOIOMMU_ERROR_TABLE\(X\)((?:[^\n]*\\\n)*[^\n]*)", text)
    assert m, "%s: no NOIOMMU_ERROR_TABLE" % path
    table = re.findall(r"\bX\(\s*([A-Z0-9_]+)\s*,", m.group(1))
    assert len(table) >= 10, "%s: NOIOMMU_ERROR_TABLE parsed to only %s" % (path, table)
    unknown = [t for t in table if t not in macros]
    assert not unknown, "%s: the table names macros that are not defined: %s" % (path, unknown)
    return interfaces, macros, set(methods.values()), table


def daemon_errors(sources, interfaces, macros, methods):
    """{wire name: [where, ...]} for every error name the sources can reply with."""
    found = {}
    for path, text in sources:
        code = strip_comments(text)
        for name in MACRO_USE.findall(code):
            if name == "NOIOMMU_ERROR_TABLE":
                continue
            # A macro protocol.h does not define would not compile; keep it by its own name
            # so that the report says what it is.
            found.setdefault(macros.get(name, name), []).append("%s: %s" % (path, name))
        for name in LITERAL_NAME.findall(code):
            if name not in methods:
                found.setdefault(name, []).append("%s: \"%s\"" % (path, name))
        for iface, suffix in BUILT_NAME.findall(code):
            name = interfaces[iface] + "." + suffix
            if name not in methods:
                found.setdefault(name, []).append("%s: %s \".%s\"" % (path, iface, suffix))
    return found


def missing(found, table_names):
    return {name: where for name, where in found.items() if name not in table_names}


def self_test(interfaces, macros, methods, table_names):
    """The check finds a macro, a literal and a built name that are not in the table, and
    ignores a comment and a method name."""
    fake = ('/* NOIOMMU_ERROR_IN_A_COMMENT "io.noiommud.Broker.Commented" */\n'
            'conn_reply_error(c, NOIOMMU_ERROR_NOT_IN_TABLE, NULL);\n'
            'conn_reply_error(c, "io.noiommud.Broker.SpelledOut", NULL);\n'
            'conn_reply_error(c, NOIOMMU_INTERFACE ".BuiltByHand", NULL);\n'
            'conn_reply_error(c, NOIOMMU_ERROR_DEVICE_BUSY, NULL);  // in the table\n'
            'x = "io.noiommud.Broker.AcquireDevice";\n')
    got = missing(daemon_errors([("fake.c", fake)], interfaces, macros, methods), table_names)
    want = {"NOIOMMU_ERROR_NOT_IN_TABLE", "io.noiommud.Broker.SpelledOut",
            "io.noiommud.Broker.BuiltByHand"}
    assert set(got) == want, "self-test: the check reported %s, expected %s" % (sorted(got), sorted(want))


def main():
    root = sys.argv[1]
    interfaces, macros, methods, table = read_protocol(os.path.join(root, "include", "noiommu", "protocol.h"))
    table_names = set(macros[t] for t in table)
    self_test(interfaces, macros, methods, table_names)

    paths = sorted(glob.glob(os.path.join(root, "daemon", "*.[ch]")))
    assert len(paths) >= 20, "only %d daemon sources under %s" % (len(paths), root)
    sources = [(os.path.relpath(p, root), open(p).read()) for p in paths]
    found = daemon_errors(sources, interfaces, macros, methods)
    # The daemon answers at least InvalidParameter, PermissionDenied and InternalError: finding
    # fewer means the sources were not read the way this test thinks.
    for name in ("VARLINK_ERROR_INVALID_PARAMETER", "NOIOMMU_ERROR_PERMISSION_DENIED",
                 "NOIOMMU_ERROR_INTERNAL"):
        assert macros[name] in found, "no use of %s found in daemon/ (parser broken?)" % name

    bad = missing(found, table_names)
    for name, where in sorted(bad.items()):
        print("not in NOIOMMU_ERROR_TABLE: %s, used at %s" % (name, "; ".join(where)))

    interface = open(os.path.join(root, "daemon", "io.noiommud.Broker.varlink")).read()
    declared = [interfaces["NOIOMMU_INTERFACE"] + "." + e
                for e in re.findall(r"^error\s+([A-Za-z]+)", interface, re.M)]
    assert declared, "io.noiommud.Broker.varlink declares no error (parser broken?)"
    undeclared = [e for e in declared if e not in table_names]
    for name in undeclared:
        print("declared in io.noiommud.Broker.varlink but not in NOIOMMU_ERROR_TABLE: %s" % name)

    if bad or undeclared:
        return 1
    print("ok: the daemon replies with %d error names, all in NOIOMMU_ERROR_TABLE (%d entries); "
          "the interface's %d errors are in it too" % (len(found), len(table), len(declared)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
