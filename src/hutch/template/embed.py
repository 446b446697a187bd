#!/usr/bin/env python3
"""Turns a text file into a C header holding it as one string constant: embed.py IN OUT NAME."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, "rb").read()
# Octal escapes for anything that is not plain printable ASCII, quotes, backslashes and '?'
# (trigraphs); newlines also end the source line so the header stays readable.
parts = []
for b in data:
    if b == 0x0A:
        parts.append('\\n"\n"')
    elif b < 0x20 or b > 0x7E or b in (0x22, 0x5C, 0x3F):
        parts.append("\\%03o" % b)
    else:
        parts.append(chr(b))
with open(out, "w") as f:
    f.write("/* Generated from %s by embed.py. */\n#pragma once\n" % src.rsplit("/", 1)[-1])
    f.write('static const char %s[] =\n"%s";\n' % (name, "".join(parts)))
