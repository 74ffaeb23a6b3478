# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shell blocks of docs/admin.md and how each is tested (shared by test-admin-coverage.py
and test-admin-guide.py).

A block is a ```sh fence directly preceded by a marker line:

  <!-- test: run -->           run as written, as root, in the sandbox; must exit 0
  <!-- test: run expect=N -->  the same; must exit N
  <!-- test: systemd -->       needs systemd as PID 1 (offline parts run, the rest: syntax)
  <!-- test: syntax -->        needs a real device or changes the machine: bash -n only
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("NOIOMMU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
GUIDE = os.path.join(SOURCE_ROOT, "docs", "admin.md")

MARKER = re.compile(r"^<!-- test: (run|systemd|syntax)((?: [a-z]+=[0-9]+)*) -->$")
KINDS = ("run", "systemd", "syntax")


class Block:
    def __init__(self, line, kind, options, text):
        self.line = line            # line number of the opening fence in admin.md
        self.kind = kind
        self.options = options      # {"expect": "1"}
        self.text = text

    def __repr__(self):
        return "docs/admin.md:%d (%s)" % (self.line, self.kind)


def read_guide():
    with open(GUIDE, encoding="utf-8") as f:
        return f.read()


def parse(text=None):
    """Returns ([Block], [problems]): every fenced shell block must carry a marker."""
    lines = (text if text is not None else read_guide()).splitlines()
    blocks, problems = [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            lang = line[3:].strip()
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end == len(lines):
                problems.append("docs/admin.md:%d: unterminated code block" % (i + 1))
                break
            if lang in ("sh", "bash", "shell", "console"):
                m = MARKER.match(lines[i - 1]) if i > 0 else None
                if not m:
                    problems.append("docs/admin.md:%d: shell block without a '<!-- test: KIND -->' "
                                    "marker on the line before it" % (i + 1))
                else:
                    opts = dict(o.split("=") for o in m.group(2).split())
                    blocks.append(Block(i + 1, m.group(1), opts, "\n".join(lines[i + 1:end]) + "\n"))
            elif i > 0 and MARKER.match(lines[i - 1]):
                problems.append("docs/admin.md:%d: marker before a '%s' block: only shell blocks are run"
                                % (i + 1, lang))
            i = end + 1
            continue
        if MARKER.match(line) and not (i + 1 < len(lines) and lines[i + 1].startswith("```")):
            problems.append("docs/admin.md:%d: marker not directly followed by a code block" % (i + 1))
        i += 1
    return blocks, problems
