#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Embeds a text file as a C string: embed.py NAME INPUT OUTPUT
import sys

name, src, dst = sys.argv[1:4]
data = open(src, encoding='utf-8').read()
with open(dst, 'w', encoding='utf-8') as f:
    f.write('/* Generated from %s by embed.py. Do not edit. */\n' % src.split('/')[-1])
    f.write('const char %s[] =\n' % name)
    for line in data.splitlines(keepends=True):
        f.write('        "%s"\n' % line.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n'))
    f.write('        ;\n')
