#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""docs/admin.md covers what the daemon can say, so that the guide cannot rot:

  * every MESSAGE_ID of daemon/msgid.h is in the troubleshooting table, and every 32-hex-digit
    id the guide names is one of them;
  * every reason ListDevices can give (the sentences of daemon/inventory.c and the
    configuration reasons of daemon/method-device.c) is in the reasons tables, verbatim;
  * every NOIOMMUD_REASON of a denial (daemon/polkit.h, record.h, dispatch.c, polkit.c) is
    explained;
  * every polkit action of policy/io.noiommud.policy is in the actions table;
  * every shell block carries a test marker, and there are blocks of each kind;
  * README.md links the guide.

No root, no daemon: unit suite. Exit 0 pass, 1 fail.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admin_guide  # noqa: E402

ROOT = admin_guide.SOURCE_ROOT
failures = []


def read(*p):
    with open(os.path.join(ROOT, *p), encoding="utf-8") as f:
        return f.read()


def c_strings(src):
    """String literals of C source, adjacent literals joined, escapes undone."""
    src = re.sub(r'"\s*\n\s*"', "", src)
    return [bytes(s, "utf-8").decode("unicode_escape") for s in re.findall(r'"((?:[^"\\\n]|\\.)*)"', src)]


def inventory_reasons():
    src = read("daemon", "inventory.c")
    # Every sentence from the first reason helper on is a reason (the file never logs, and the
    # other literals before it are sysfs names); a sentence has a space in it.
    body = src[src.index("static const char *cdev_reason"):]
    return sorted(set(s for s in c_strings(body) if " " in s))


def dispatch_reasons():
    src = read("daemon", "method-device.c")     # the device handlers and their reason helpers
    out = []
    for fn in ("device_disabled_reason", "device_reason"):
        body = src[src.index("static const char *%s(" % fn):]
        body = body[:body.index("\n}\n")]
        for s in c_strings(body):
            if " " in s:
                # a format: what precedes the first conversion is what the guide can quote
                out.append(re.split(r"%[a-z]", s)[0].rstrip(" :,"))
    return out


def denial_reasons():
    out = set()
    out.update(re.findall(r'#define POLKIT_REASON_\w+ "([a-z-]+)"', read("daemon", "polkit.h")))
    out.update(re.findall(r'#define AUDIT_REASON_\w+ "([a-z-]+)"', read("daemon", "record.h")))
    out.update(re.findall(r'#define REASON_ROOT\w+ "([a-z-]+)"', read("daemon", "dispatch.c")))
    for s in c_strings(read("daemon", "polkit.c")):
        if s in ("client-disconnected", "interactive-authentication-required"):
            out.add(s)
    return sorted(out)


def main():
    guide = admin_guide.read_guide()
    # The table cells quote the daemon's words in backquotes; compare without Markdown escapes.
    text = guide.replace("\\|", "|")

    msgids = dict(re.findall(r'#define NOIOMMU_MSGID_(\w+)\s+"([0-9a-f]{32})"', read("daemon", "msgid.h")))
    if len(msgids) < 10:
        failures.append("daemon/msgid.h parsed to %d ids: the parser is broken" % len(msgids))
    for name, mid in sorted(msgids.items()):
        if "`%s`" % mid not in text:
            failures.append("MESSAGE_ID %s (%s) is not in the troubleshooting table" % (mid, name))
    for mid in sorted(set(re.findall(r"\b[0-9a-f]{32}\b", text)) - set(msgids.values())):
        failures.append("the guide names MESSAGE_ID %s, which daemon/msgid.h does not define" % mid)

    reasons = inventory_reasons() + dispatch_reasons()
    if len(reasons) < 30:
        failures.append("only %d ListDevices reasons parsed: the parser is broken" % len(reasons))
    for r in reasons:
        if r not in text:
            failures.append("ListDevices reason not in the guide: %r" % r)

    denials = denial_reasons()
    if len(denials) < 8:
        failures.append("only %d denial reasons parsed: %s" % (len(denials), denials))
    for r in denials:
        if "`%s`" % r not in text:
            failures.append("denial reason %s (NOIOMMUD_REASON) is not explained" % r)

    actions = re.findall(r'<action id="([\w.-]+)">', read("policy", "io.noiommud.policy"))
    if len(actions) < 5:
        failures.append("policy/io.noiommud.policy parsed to %s" % actions)
    for a in actions:
        if "| `%s` |" % a not in text:
            failures.append("polkit action %s is not in the actions table" % a)

    blocks, problems = admin_guide.parse(guide)
    failures.extend(problems)
    for kind in admin_guide.KINDS:
        if not any(b.kind == kind for b in blocks):
            failures.append("no shell block of kind %s" % kind)
    if "docs/admin.md" not in read("README.md"):
        failures.append("README.md does not link docs/admin.md")

    print("%d MESSAGE_IDs, %d ListDevices reasons, %d denial reasons, %d polkit actions, %d shell blocks"
          % (len(msgids), len(reasons), len(denials), len(actions), len(blocks)))
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
