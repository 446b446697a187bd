#!/bin/sh
# Embeds a text file as a C string: embed-text.sh NAME INPUT OUTPUT
set -eu
name=$1 in=$2 out=$3
{
	echo "/* Generated from $(basename "$in") by embed-text.sh: do not edit. */"
	echo "static const char $name[] ="
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$/\\n"/' "$in"
	echo ";"
} > "$out.tmp"
mv "$out.tmp" "$out"
